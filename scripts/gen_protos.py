"""Generate the Python gRPC code from protos/ into src/bookstore/pb/.

Usage: python scripts/gen_protos.py [--check]

--check regenerates into a temporary folder and fails if the committed
code differs (the test command runs it).
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "src"
PACKAGE = Path("bookstore") / "pb"
# protoc plugins from mypy-protobuf, installed beside this interpreter
BIN = Path(sys.executable).parent


def generate(out: Path) -> list[Path]:
    sources = sorted((PROTOS / PACKAGE).glob("*.proto"))
    (out / PACKAGE).mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--grpc_python_out={out}",
        *[str(s) for s in sources],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = out / PACKAGE / "__init__.py"
    init.write_text('"""Generated gRPC code (scripts/gen_protos.py). Do not edit."""\n')
    return sorted(p for p in (out / PACKAGE).iterdir() if p.is_file())


def main() -> int:
    if "--check" not in sys.argv[1:]:
        for path in generate(OUT):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = {p.name for p in (OUT / PACKAGE).iterdir() if p.is_file()}
        names = {p.name for p in fresh}
        stale = [
            n
            for n in sorted(names | committed)
            if n not in names
            or n not in committed
            or not filecmp.cmp(Path(tmp) / PACKAGE / n, OUT / PACKAGE / n, shallow=False)
        ]
    if stale:
        print("generated code is out of date: " + ", ".join(stale))
        print("run: python scripts/gen_protos.py")
        return 1
    print("generated code is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
