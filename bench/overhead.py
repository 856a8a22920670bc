"""Observability overhead: bench.py's throughput at 50 clients, side by side, for

1. tracing off (metrics on, as always),
2. tracing on, exporting 100% of spans over OTLP to a local sink (bench/otlp_sink.py),
3. optionally the code before observability (`--base /work/base`: that checkout's own
   bench/bench.py with its own .venv), tracing off.

    .venv/bin/python bench/overhead.py --base /work/base

Each configuration starts its own system on free ports, one after the other, with the
same arguments (`--orders` etc. are passed on to bench.py). The targets (issue 13):
tracing on within 15% of tracing off; tracing off within 3% of the base. Prints a table;
nothing is asserted. Run it on a quiet machine: the figures are noise otherwise.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from ports import free_ports  # noqa: E402

THROUGHPUT = re.compile(r"\| checkouts/s at (\d+) concurrent clients \| (\d+) \|")
P99 = re.compile(r"\| latency p50 / p95 / p99 at \d+ concurrent clients \| ([^|]+) \|")


@contextmanager
def sink() -> Iterator[str]:
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "otlp_sink.py"), "--port", str(port)]
    )
    try:
        time.sleep(1.0)  # the sink binds at once; give its interpreter a moment to start
        if process.poll() is not None:
            raise SystemExit("the OTLP sink did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def run(root: Path, passed: list[str], env: list[str]) -> tuple[str, str]:
    """bench.py of the checkout at `root`: (throughput at 50 clients, latency line)."""
    command = [str(root / ".venv" / "bin" / "python"), str(root / "bench" / "bench.py")]
    command += passed + [arg for item in env for arg in ("--env", item)]
    print(f"running: {' '.join(command)}", file=sys.stderr, flush=True)
    out = subprocess.run(command, cwd=root, check=True, capture_output=True, text=True).stdout
    print(out, file=sys.stderr)
    rate = next((m.group(2) for m in THROUGHPUT.finditer(out) if m.group(1) == "50"), "?")
    latency = P99.search(out)
    return rate, latency.group(1).strip() if latency else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="a checkout of the code before this work")
    args, passed = parser.parse_known_args(argv)
    rows = [("tracing off, metrics on", *run(ROOT, passed, []))]
    with sink() as endpoint:
        traced = [
            f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}",
            "OTEL_EXPORTER_OTLP_INSECURE=true",
            "OTEL_TRACES_SAMPLER=always_on",
        ]
        rows.append(("tracing on, 100% of spans exported", *run(ROOT, passed, traced)))
    if args.base is not None:
        rows.append((f"before observability ({args.base})", *run(args.base, passed, [])))
    off = float(rows[0][1]) if rows[0][1].isdigit() else None
    print("| configuration | checkouts/s at 50 clients | vs tracing off | p50 / p95 / p99 at 10 |")
    print("|---|---|---|---|")
    for name, rate, latency in rows:
        ratio = f"{(float(rate) / off - 1) * 100:+.1f}%" if off and rate.isdigit() else "?"
        print(f"| {name} | {rate} | {ratio} | {latency} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
