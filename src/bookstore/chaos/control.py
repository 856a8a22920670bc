"""The launcher's fault control: a unix socket in the data dir (mode 0600, so only
this user on this machine reaches it), one JSON request per connection, one JSON
answer. The orchestrator relays the cluster view's fault panel here.

    {"op": "status"}
    {"op": "kill", "name": "order-executor-4"}          SIGKILL (the launcher restarts it)
    {"op": "pause", "name": ..., "seconds": 5}          SIGSTOP, then SIGCONT
    {"op": "restart", "name": ...}                      SIGTERM (the launcher restarts it)
    {"op": "rule", "src": ..., "dst": ..., "action": "drop|delay|refuse", "delayMs": 0}
    {"op": "isolate", "name": ...}                      drop everything to and from it
    {"op": "partition", "sides": [[...], [...]]}        drop everything across the sides
    {"op": "heal", "name": ...}  {"op": "heal_all"}     (heal_all also continues paused ones)

Message rules go to the rule file every process's filter reads (`filter`). Every
change is said on the launcher's output and kept for the panel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bookstore.chaos.rules import Rule, RuleTable

CHANGES_KEPT = 50
MAX_REQUEST_BYTES = 64 * 1024
MAX_PAUSE_S = 60.0


def chaos_dir(data_dir: Path) -> Path:
    return data_dir / "chaos"


def rules_path(data_dir: Path) -> Path:
    return chaos_dir(data_dir) / "rules.json"


def socket_path(data_dir: Path) -> Path:
    return chaos_dir(data_dir) / "control.sock"


class ControlError(ValueError):
    """A request that cannot be carried out; the message says why."""


class Control:
    """Process and message faults for the processes a launcher runs.

    `pids` gives the current pid of each running process by name; `say` writes a
    line on the launcher's output."""

    def __init__(
        self,
        data_dir: Path,
        names: list[str],
        pids: Callable[[], dict[str, int]],
        say: Callable[[str], None],
    ) -> None:
        self.rules_file = rules_path(data_dir)
        self.socket = socket_path(data_dir)
        self.names = names
        self._pids = pids
        self._say = say
        self.table = RuleTable()
        self.paused: dict[str, asyncio.TimerHandle] = {}
        self.changes: deque[dict[str, str]] = deque(maxlen=CHANGES_KEPT)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self._write_rules()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(self.socket))
        os.chmod(self.socket, 0o600)
        self._say(f"chaos on: fault control at {self.socket}")

    async def close(self) -> None:
        for name in list(self.paused):
            self._continue(name)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = await reader.readline()
            try:
                if len(raw) > MAX_REQUEST_BYTES:
                    raise ControlError("request too large")
                answer = self.handle(json.loads(raw))
            except (ControlError, ValueError, KeyError, TypeError) as exc:
                answer = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    # -- requests -------------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            return {"ok": True, **self.status()}
        if op in ("kill", "pause", "restart"):
            name = self._known(request.get("name"))
            if op == "pause":
                self.pause(name, float(request.get("seconds", 5)))
            else:
                self.signal(name, signal.SIGKILL if op == "kill" else signal.SIGTERM, op)
        elif op == "rule":
            rule = Rule.from_json(request)
            self.table.add(rule)
            self._rules_changed(rule.describe())
        elif op == "isolate":
            name = self._known(request.get("name"))
            self.table.isolate(name)
            self._rules_changed(f"isolate {name}")
        elif op == "partition":
            sides = [[self._known(n) for n in side] for side in request["sides"]]
            if len(sides) != 2 or not all(sides):
                raise ControlError("a partition needs two sides, each with a process")
            self.table.partition(*sides)
            self._rules_changed(f"partition {' '.join(sides[0])} | {' '.join(sides[1])}")
        elif op == "heal":
            name = self._known(request.get("name"))
            if name in self.paused:
                self._continue(name)
            self.table.heal(name)
            self._rules_changed(f"heal {name}")
        elif op == "heal_all":
            for name in list(self.paused):
                self._continue(name)
            self.table.heal_all()
            self._rules_changed("heal all")
        else:
            raise ControlError(f"unknown op {op!r}")
        return {"ok": True, **self.status()}

    def status(self) -> dict[str, Any]:
        pids = self._pids()
        return {
            "processes": [
                {
                    "name": n,
                    "pid": pids.get(n),
                    "state": "paused" if n in self.paused else "running" if n in pids else "down",
                }
                for n in self.names
            ],
            "rules": self.table.as_json(),
            "changes": list(self.changes),
        }

    def _known(self, name: object) -> str:
        if not isinstance(name, str) or name not in self.names:
            raise ControlError(f"unknown process {name!r}")
        return name

    def _pid(self, name: str) -> int:
        pid = self._pids().get(name)
        if pid is None:
            raise ControlError(f"{name} is not running")
        return pid

    def signal(self, name: str, sig: signal.Signals, what: str) -> None:
        pid = self._pid(name)
        if name in self.paused:  # a stopped process would not act on SIGTERM
            self._continue(name)
        _signal_group(pid, sig)
        self._record(f"{what} {name} (pid {pid})")

    def pause(self, name: str, seconds: float) -> None:
        if not 0 < seconds <= MAX_PAUSE_S:
            raise ControlError(f"pause between 0 and {MAX_PAUSE_S:.0f} s")
        pid = self._pid(name)
        _signal_group(pid, signal.SIGSTOP)
        old = self.paused.pop(name, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self.paused[name] = loop.call_later(seconds, self._continue, name, pid)
        self._record(f"pause {name} (pid {pid}) for {seconds:g} s")

    def _continue(self, name: str, pid: int | None = None) -> None:
        handle = self.paused.pop(name, None)
        if handle is not None:
            handle.cancel()
        target = pid if pid is not None else self._pids().get(name)
        if target is not None:
            _signal_group(target, signal.SIGCONT)
            self._record(f"continue {name} (pid {target})")

    def _rules_changed(self, what: str) -> None:
        self._write_rules()
        self._record(what)

    def _write_rules(self) -> None:
        """Atomically (rename), so a reader never sees half a file."""
        self.rules_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.rules_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.table.as_json()))
        os.replace(tmp, self.rules_file)

    def _record(self, what: str) -> None:
        self.changes.append({"at": datetime.now(UTC).isoformat(), "what": what})
        self._say(f"chaos: {what}")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def request(data_dir: Path, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the launcher's control socket; ControlError if none answers."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(socket_path(data_dir)))
            try:
                writer.write(json.dumps(body).encode() + b"\n")
                await writer.drain()
                raw = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise ControlError(f"the launcher's fault control does not answer ({exc})") from None
    answer: dict[str, Any] = json.loads(raw)
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "refused")))
    return answer
