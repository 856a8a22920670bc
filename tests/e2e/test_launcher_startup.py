"""`bookstore up` on a machine where a service cannot start: it stops by itself, says
which service and why (its last lines of output), and leaves no process behind."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from harness import alive, system_env

from bookstore.parent_death import die_with_parent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

_STARTED = re.compile(r"launcher\s+\| started (\S+) pid=(\d+)")


def _bookstore_up(data_dir: Path, extra_env: Mapping[str, str]) -> tuple[int, str]:
    """Run `bookstore up` until it ends by itself: its exit code and its whole output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bookstore", "up", "--no-color"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=system_env(data_dir, extra_env),
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    out, _ = process.communicate()  # the suite's timeout is the backstop
    return process.returncode, out.decode("utf-8", "replace")


def _error(out: str) -> str:
    """The launcher's closing error: its "error: ..." line and the lines it quotes."""
    lines = [line.split("| ", 1)[-1] for line in out.splitlines() if line.startswith("launcher")]
    start = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("stopping ")), None)
    return "\n".join(lines[start:end])


def _no_service_left(out: str) -> None:
    pids = [int(pid) for _, pid in _STARTED.findall(out)]
    assert pids, out
    assert not [pid for pid in pids if alive(pid)]


def test_a_configuration_error_stops_bookstore_up_at_the_first_exit(tmp_path: Path) -> None:
    # Only the services read the tracing variables: the launcher starts them all.
    code, out = _bookstore_up(
        tmp_path,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        },
    )
    assert code == 1, out
    error = _error(out)
    assert re.match(
        r"error: \S+ stopped at start-up on a configuration error \(code 78\);"
        r" its last lines of output:\n",
        error,
    ), error
    assert "bookstore: configuration error: OTEL_EXPORTER_OTLP_PROTOCOL='http/json'" in error
    assert "restarting in" not in out  # not one restart
    assert "not ready after" not in out
    _no_service_left(out)


def test_the_same_start_up_failure_three_times_stops_bookstore_up(tmp_path: Path) -> None:
    # A data directory that is a file: the services that keep state fail alike at
    # every start. (No TLS: the launcher would make its certificates in there first.)
    data_dir = tmp_path / "not-a-directory"
    data_dir.write_text("")
    code, out = _bookstore_up(data_dir, {"BOOKSTORE_TLS": "off"})
    assert code == 1, out
    error = _error(out)
    assert re.match(
        r"error: \S+ failed at start-up 3 times in a row with the same error \(code 1\);"
        r" its last lines of output:\n",
        error,
    ), error
    # Whichever service fails first names the data directory (as the file it is, or
    # as the parent of the folder it wanted there).
    last = error.splitlines()[-1]
    assert re.search(r"(FileExistsError|NotADirectoryError): \[Errno \d+\]", last), error
    assert str(data_dir) in last, error
    assert "not ready after" not in out
    _no_service_left(out)
