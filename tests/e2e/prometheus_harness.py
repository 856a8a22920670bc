"""A real Prometheus (Debian's `prometheus` package) on a free loopback port.

    with RealPrometheus({"fraud-detection": ["127.0.0.1:51051"]}) as prometheus:
        prometheus.wait_until("up == 1")
        prometheus.query('sum(bookstore_checkouts_total)')   # the instant vector

It scrapes every second, keeps its data in a temporary directory, and is stopped
(then killed if it lingers) when the block ends. A missing binary fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
import yaml
from ports import free_ports

READY_TIMEOUT_S = 60.0


class RealPrometheus:
    def __init__(self, jobs: Mapping[str, Sequence[str]]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            where = "CI" if os.environ.get("CI") == "true" else "this machine"
            pytest.fail(f"prometheus is not installed on {where}: run scripts/install --dev")
        self._binary = binary
        self._jobs = jobs
        self._dir = Path(tempfile.mkdtemp(prefix="bookstore-prometheus-"))
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in self._jobs.items()
            ],
        }
        path = self._dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def __enter__(self) -> RealPrometheus:
        log = (self._dir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                self._binary,
                f"--config.file={self._write_config()}",
                f"--storage.tsdb.path={self._dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.fail(f"prometheus exited: {self.log()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        pytest.fail(f"prometheus not ready after {READY_TIMEOUT_S} s: {self.log()}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log(self) -> str:
        path = self._dir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now; a query error fails the test."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_until(self, expr: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Poll until `expr` returns a sample (a condition, e.g. "up == 1"); fails after."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"{expr!r} returned nothing within {timeout_s} s")
            time.sleep(0.25)
