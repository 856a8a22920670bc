"""The lab itself: hosts on a switch, a cut link, a 2|2 split, and cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netlab import Host, Lab, close_lab, namespaces, open_lab, require_root_and_tools, run_ip

pytestmark = pytest.mark.netns

PORT = 9000
_SERVER = f"""
import socketserver
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline())
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer(("0.0.0.0", {PORT}), Echo).serve_forever()
"""
_PROBE = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0) as s:
        s.sendall(b"ping\\n")
        s.settimeout(1.0)
        sys.exit(0 if s.recv(16) == b"ping\\n" else 1)
except OSError:
    sys.exit(1)
"""


def reaches(source: Host, target: Host) -> bool:
    """True when an echo round trip from source to target's server succeeds."""
    argv = [sys.executable, "-c", _PROBE, target.address, str(PORT)]
    result = subprocess.run(
        ["ip", "netns", "exec", source.namespace, *argv],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return result.returncode == 0


def serve_echo(lab: Lab, *hosts: Host) -> None:
    """An echo server on every host, listening before this returns."""
    for host in hosts:
        lab.spawn(host, [sys.executable, "-c", _SERVER], {"PATH": os.environ["PATH"]}, host.name)
    deadline = time.monotonic() + 10
    for host in hosts:
        while not reaches(host, host):
            assert time.monotonic() < deadline, f"echo server on {host.name} did not start"
            time.sleep(0.1)


def test_hosts_reach_each_other_through_the_switch(lab: Lab) -> None:
    a, b, c = (lab.add_host(n) for n in ("a", "b", "c"))
    serve_echo(lab, a, b, c)
    assert [a.address, b.address, c.address] == ["198.18.0.10", "198.18.0.11", "198.18.0.12"]
    for source in (a, b, c):
        for target in (a, b, c):
            assert reaches(source, target), (source.name, target.name)


def test_no_host_has_a_route_out_of_the_lab(lab: Lab) -> None:
    host = lab.add_host("a")
    routes = run_ip("ip", "-n", host.namespace, "-4", "route", "show").splitlines()
    assert routes and all(r.startswith("198.18.0.0/24 ") for r in routes), routes
    assert run_ip("ip", "-n", host.namespace, "route", "show", "default").strip() == ""


def test_a_cut_link_isolates_its_host_until_restored(lab: Lab) -> None:
    a, b = lab.add_host("a"), lab.add_host("b")
    serve_echo(lab, a, b)
    lab.cut(b)
    assert not reaches(a, b)
    assert not reaches(b, a)
    assert reaches(b, b), "the host itself keeps running"
    lab.restore(b)
    deadline = time.monotonic() + 10
    while not reaches(a, b):
        assert time.monotonic() < deadline, "the restored link never carried traffic"
        time.sleep(0.2)
    assert reaches(b, a)


def test_a_split_separates_two_groups_that_still_reach_a_shared_host(lab: Lab) -> None:
    e1, e2, e3, e4, queue = (lab.add_host(n) for n in ("e1", "e2", "e3", "e4", "queue"))
    serve_echo(lab, e1, e2, e3, e4, queue)
    lab.split([e1, e2], [e3, e4])
    for left in (e1, e2):
        for right in (e3, e4):
            assert not reaches(left, right), (left.name, right.name)
            assert not reaches(right, left), (right.name, left.name)
    assert reaches(e1, e2) and reaches(e3, e4)
    for executor in (e1, e2, e3, e4):
        assert reaches(executor, queue) and reaches(queue, executor), executor.name
    lab.heal()
    deadline = time.monotonic() + 10
    while not (reaches(e1, e4) and reaches(e3, e2)):
        assert time.monotonic() < deadline, "the healed split never carried traffic"
        time.sleep(0.2)


def test_closing_the_lab_removes_its_namespaces_and_processes(tmp_path: Path) -> None:
    lab = open_lab(tmp_path)
    try:
        a = lab.add_host("a")
        serve_echo(lab, a)
        (server,) = lab.processes
        made = [n for n in namespaces() if n.startswith(lab.tag)]
        assert sorted(made) == sorted([lab.switch, a.namespace])
    finally:
        close_lab(lab)
    assert server.poll() is not None
    assert not [n for n in namespaces() if n.startswith(lab.tag)]


def test_without_root_the_lab_skips_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="need root"):
        require_root_and_tools()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="need root"):
        require_root_and_tools()
