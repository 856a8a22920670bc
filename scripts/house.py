"""The house figures of src/ (generated code in src/bookstore/pb left out): lines and
modules, the functions over the limit, the largest modules.

    python scripts/house.py [--src DIR] [--function-limit 50] [--module-limit 450]
                            [--duplicates]

A function's length runs from its `def` to its last line (decorators not counted); a
nested function counts on its own and inside the one that holds it. `--duplicates`
also counts the repeated pairs that the `duplicates` tool finds in a copy of src/
without the generated code.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import tempfile
from pathlib import Path


def modules(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*.py") if "pb" not in p.relative_to(src).parts[:-1])


def functions(path: Path, src: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = ".".join(path.relative_to(src).with_suffix("").parts[1:])
    found: list[tuple[int, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                assert child.end_lineno is not None
                qualified = f"{prefix}.{child.name}"
                found.append((child.end_lineno - child.lineno + 1, qualified))
                walk(child, qualified)
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}.{child.name}")

    walk(tree, name)
    return found


def duplicates(src: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.rmtree(copy / "bookstore" / "pb", ignore_errors=True)
        found = subprocess.run(
            ["duplicates", "--most", "200", "--repo", str(copy), "--seconds", "120"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return found.splitlines()[0] if found else "duplicates: no output"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--function-limit", type=int, default=50)
    parser.add_argument("--module-limit", type=int, default=450)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--duplicates", action="store_true")
    args = parser.parse_args()
    paths = modules(args.src)
    sizes = sorted(((len(p.read_text().splitlines()), p) for p in paths), reverse=True)
    longest = sorted((f for p in paths for f in functions(p, args.src)), reverse=True)
    over = [f for f in longest if f[0] > args.function_limit]
    print(f"src lines {sum(n for n, _ in sizes)} in {len(paths)} modules")
    print(f"functions over {args.function_limit} lines: {len(over)}")
    for length, name in longest[: max(args.top, len(over))]:
        print(f"  {length:4d}  {name}")
    big = [s for s in sizes if s[0] > args.module_limit]
    print(f"modules over {args.module_limit} lines: {len(big)}")
    for length, path in sizes[: args.top]:
        print(f"  {length:4d}  {path.relative_to(args.src)}")
    if args.duplicates:
        print(duplicates(args.src))


if __name__ == "__main__":
    main()
