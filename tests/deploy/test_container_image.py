"""The Dockerfile, its build context, and the health check the image runs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2
from healthz import healthz_server
from tls_support import make_certs, transport

from bookstore import grpcutil
from bookstore.grpcutil import create_server, set_serving

ROOT = Path(__file__).resolve().parents[2]
HEALTHCHECK = [sys.executable, "-m", "bookstore.healthcheck"]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def _only(keyword: str) -> str:
    found = [rest for kw, rest in _instructions() if kw == keyword]
    assert len(found) == 1, f"{keyword}: {found}"
    return found[0]


def test_the_image_builds_on_slim_python_311() -> None:
    assert _only("FROM") == "python:3.11-slim"


def test_the_image_installs_the_package_without_dev_extras() -> None:
    runs = " ".join(rest for kw, rest in _instructions() if kw == "RUN")
    assert "/tmp/build/scripts/install" in runs, "the image installs as scripts/run does"
    assert "--dev" not in runs and "[dev]" not in runs


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    user = _only("USER").split(":")[0]
    assert user.isdigit() and int(user) != 0


def test_the_image_command_is_bookstore_serve() -> None:
    command = json.loads(_only("CMD"))
    assert command[:2] == ["bookstore", "serve"]
    assert "ENTRYPOINT" not in dict(_instructions())


def test_the_image_health_check_asks_the_service() -> None:
    options, _, command = _only("HEALTHCHECK").partition(" CMD ")
    assert json.loads(command) == ["bookstore-healthcheck"]
    assert "--timeout=" in options
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'bookstore-healthcheck = "bookstore.healthcheck:main"' in pyproject


def _copy_sources() -> set[str]:
    return {
        word.rstrip("/")
        for kw, rest in _instructions()
        if kw == "COPY"
        for word in rest.split()[:-1]
        if not word.startswith("--")
    }


def test_the_build_context_holds_only_what_the_image_needs() -> None:
    patterns = (ROOT / ".dockerignore").read_text().split()
    assert patterns[patterns.index("*") :][:1] == ["*"], "everything excluded first"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert _copy_sources() <= allowed, _copy_sources() - allowed


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex on '/'-separated relative paths."""
    parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
    tr = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(tr.get(p, re.escape(p)) for p in parts))


def build_context(target: Path) -> list[str]:
    """Copy what `docker build` would send (per .dockerignore) to target; the paths."""
    rules = [
        (line.startswith("!"), _pattern(line.lstrip("!")))
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    exceptions = [rx for keep, rx in rules if keep]

    def excluded(rel: str) -> bool:
        parents = [rel.rsplit("/", n)[0] for n in range(rel.count("/") + 1)]
        result = False
        for keep, rx in rules:
            if any(rx.fullmatch(p) for p in parents):
                result = not keep
        return result

    copied = []
    for folder, dirs, files in os.walk(ROOT):
        base = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if base == "." else f"{base}/"
        # Walk into an excluded folder only if an exception may re-include inside it.
        dirs[:] = [
            d
            for d in dirs
            if not excluded(prefix + d)
            or any(rx.pattern.startswith(re.escape(prefix + d + "/")) for rx in exceptions)
        ]
        for name in files:
            rel = prefix + name
            if not excluded(rel):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, target / rel)
                copied.append(rel)
    return copied


def test_the_build_context_builds_the_package(tmp_path: Path) -> None:
    context = tmp_path / "context"
    copied = build_context(context)
    assert "src/bookstore/healthcheck.py" in copied and "src/bookstore/cli.py" in copied
    assert not [p for p in copied if p.startswith((".git/", ".venv/", "tests/"))]
    assert not [p for p in copied if "__pycache__" in p]
    for source in _copy_sources():
        assert (context / source).exists(), f"COPY {source}: not in the build context"
    # The image's install step, run on the build context alone (no Docker engine here):
    # the runtime package from the lock, and every one of its modules imports.
    venv = tmp_path / "venv"
    install = subprocess.run(
        [str(context / "scripts" / "install")],
        env={**os.environ, "BOOKSTORE_VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    imports = subprocess.run(
        [str(venv / "bin" / "python"), "-c", IMPORT_EVERY_MODULE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imports.returncode == 0, imports.stderr
    modules = imports.stdout.split()
    assert "bookstore.cluster_view.charts" in modules and "bookstore.pb.queue_pb2" in modules
    assert "bookstore.healthcheck" in modules
    installed = Path(imports.stdout.split()[0])
    for needed in ("catalogue/books.json", "py.typed", "web/static"):
        assert (installed / needed).exists(), needed


# Prints the installed package's folder, then imports every module under it.
IMPORT_EVERY_MODULE = """
import importlib, pkgutil, bookstore
print(bookstore.__path__[0])
for module in pkgutil.walk_packages(bookstore.__path__, "bookstore."):
    if module.name.endswith(".__main__"):
        continue
    importlib.import_module(module.name)
    print(module.name)
"""


def _check(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEALTHCHECK, *args],
        env={**os.environ, "BOOKSTORE_BIND_HOST": "127.0.0.1", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


async def _acheck(*args: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *HEALTHCHECK,
        *args,
        env={**os.environ, "BOOKSTORE_BIND_HOST": "127.0.0.1", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, err.decode()


@pytest.fixture
def queue_identity(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Certificates in a data directory of their own; servers made meanwhile are
    the queue's, with mutual TLS (as `bookstore serve order-queue` makes them)."""
    env = {"BOOKSTORE_DATA_DIR": str(tmp_path), "BOOKSTORE_TLS": "on"}
    make_certs(env)
    grpcutil.use_transport(transport(env, "order-queue"))
    try:
        yield env
    finally:
        grpcutil.use_transport(grpcutil.PLAINTEXT)


async def test_the_health_check_passes_only_while_grpc_health_says_serving(
    queue_identity: dict[str, str],
) -> None:
    server, health, port = create_server("127.0.0.1:0", lambda _: None, [])
    await server.start()
    env = {**queue_identity, "ORDER_EXECUTOR_ADDRESSES": f"1=127.0.0.1:1,3=127.0.0.1:{port}"}
    args = ("order-executor", "--replica-id", "3")
    try:
        # Without a certificate the TLS server never answers.
        code, err = await _acheck(*args, env={**env, "BOOKSTORE_TLS": "off"})
        assert code == 1 and "UNAVAILABLE" in err
        await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        code, err = await _acheck(*args, env=env)
        assert code == 1 and "NOT_SERVING" in err
        await set_serving(health, [])
        code, err = await _acheck(*args, env=env)
        assert code == 0, err
    finally:
        await server.stop(None)
    code, err = await _acheck(*args, env=env)
    assert code == 1 and "UNAVAILABLE" in err


@pytest.fixture
def healthz() -> Iterator[tuple[int, list[int]]]:
    """An HTTP server on a free port whose /healthz answers the status in the list."""
    with healthz_server() as served:
        yield served


def test_the_orchestrator_health_check_asks_healthz(healthz: tuple[int, list[int]]) -> None:
    port, status = healthz
    env = {"ORCHESTRATOR_ADDRESS": f"orchestrator:{port}"}
    assert _check("orchestrator", env=env).returncode == 0
    status[0] = 503
    result = _check("orchestrator", env=env)
    assert result.returncode == 1 and "503" in result.stderr


def test_the_health_check_reads_the_service_from_the_command_line() -> None:
    result = _check(
        "/usr/local/bin/python",
        "/usr/local/bin/bookstore",
        "serve",
        "order-queue",
        env={"ORDER_QUEUE_ADDRESS": "127.0.0.1:1", "BOOKSTORE_TLS": "off"},
    )
    assert result.returncode == 1 and "127.0.0.1:1" in result.stderr
    # With TLS on it needs the service's certificate, and says where it looked.
    result = _check("order-queue", env={"BOOKSTORE_TLS_DIR": "/nonexistent/certs"})
    assert result.returncode == 1 and "/nonexistent/certs/" in result.stderr
    result = _check("not-a-service", env={})
    assert result.returncode == 1 and "no bookstore service" in result.stderr
