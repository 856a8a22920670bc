"""`bookstore chaos SCENARIO`: ask the running system (`bookstore up --chaos`) to
play a scenario, follow it, and print its steps and audit. Exit code 0 when the
audit shows nothing lost and nothing doubled, 1 otherwise, 2 when it cannot run.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from bookstore import health
from bookstore.chaos.load import Audit
from bookstore.settings import Settings

POLL_S = 0.5
GIVE_UP_S = 120.0


def _call(base: str, method: str, path: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{base}{path}", method=method, data=b"{}" if method == "POST" else None
    )
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def main(settings: Settings, scenario: str) -> int:
    host, port = health.local(settings.orchestrator_address)
    base = f"http://{host}:{port}"
    try:
        code, body = _call(base, "POST", f"/api/chaos/scenarios/{scenario}")
    except OSError as exc:
        print(
            f"bookstore chaos: the orchestrator at {base} does not answer ({exc})", file=sys.stderr
        )
        return 2
    if code == 404 and "error" in body and body["error"].get("code") != "NO_SUCH_SCENARIO":
        print("bookstore chaos: chaos is off; start with `bookstore up --chaos`", file=sys.stderr)
        return 2
    if code != 202:
        print(f"bookstore chaos: {body.get('error', {}).get('message', code)}", file=sys.stderr)
        return 2
    print(f"playing {scenario} under load ...")
    deadline = time.monotonic() + GIVE_UP_S
    shown = 0
    run: dict[str, Any] = body
    while not run.get("done") and time.monotonic() < deadline:
        time.sleep(POLL_S)
        run = _call(base, "GET", "/api/chaos")[1].get("scenario") or run
        for step in run.get("steps", [])[shown:]:
            print(f"  {step}")
        shown = len(run.get("steps", []))
    return _report(run)


def _report(run: dict[str, Any]) -> int:
    if not run.get("done"):
        print("bookstore chaos: the scenario did not finish", file=sys.stderr)
        return 2
    if run.get("error"):
        print(f"scenario failed: {run['error']}")
    raw = (run.get("load") or {}).get("audit")
    if raw is None:
        print("no audit: the load did not finish")
        return 1
    audit = Audit(
        raw["sent"],
        raw["acknowledged"],
        raw["executed"],
        raw["rejected"],
        raw["unknown"],
        raw["lost"],
        raw["doubled"],
        raw["longestGapS"],
    )
    print("audit:")
    for line in audit.lines():
        print(f"  {line}")
    return 0 if audit.lost == 0 and audit.doubled == 0 and not run.get("error") else 1
