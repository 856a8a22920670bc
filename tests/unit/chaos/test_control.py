"""The launcher's fault control, without processes: message-fault requests, what
it refuses, and what it reports (signals are covered by the end-to-end tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bookstore.chaos.control import Control, ControlError, rules_path

NAMES = ["order-queue", "order-executor-1", "order-executor-2", "orchestrator"]


@pytest.fixture
def control(tmp_path: Path) -> tuple[Control, list[str]]:
    said: list[str] = []
    return Control(
        tmp_path, NAMES, lambda: {"order-queue": 10, "orchestrator": 11}, said.append
    ), said


def written(tmp_path: Path) -> list[dict[str, object]]:
    rules: list[dict[str, object]] = json.loads(rules_path(tmp_path).read_text())
    return rules


def test_isolate_and_heal_write_the_rule_file_and_say_so(
    control: tuple[Control, list[str]], tmp_path: Path
) -> None:
    ctl, said = control
    ctl.handle({"op": "isolate", "name": "order-executor-2"})
    assert {"src": "order-executor-2", "dst": "*", "action": "drop", "delayMs": 0} in written(
        tmp_path
    )
    ctl.handle({"op": "heal", "name": "order-executor-2"})
    assert written(tmp_path) == []
    assert said == ["chaos: isolate order-executor-2", "chaos: heal order-executor-2"]
    assert [c["what"] for c in ctl.changes] == [s.removeprefix("chaos: ") for s in said]


def test_a_slow_link_and_a_refusing_service(
    control: tuple[Control, list[str]], tmp_path: Path
) -> None:
    ctl, _ = control
    ctl.handle(
        {
            "op": "rule",
            "src": "order-executor-1",
            "dst": "order-queue",
            "action": "delay",
            "delayMs": 200,
        }
    )
    ctl.handle({"op": "rule", "src": "*", "dst": "order-queue", "action": "refuse"})
    assert len(written(tmp_path)) == 2
    answer = ctl.handle({"op": "heal_all"})
    assert answer["rules"] == [] and written(tmp_path) == []


def test_partition_needs_two_sides_of_known_processes(control: tuple[Control, list[str]]) -> None:
    ctl, _ = control
    with pytest.raises(ControlError):
        ctl.handle({"op": "partition", "sides": [["order-executor-1"], []]})
    with pytest.raises(ControlError, match="unknown process"):
        ctl.handle({"op": "partition", "sides": [["order-executor-1"], ["nope"]]})
    ctl.handle({"op": "partition", "sides": [["order-executor-1"], ["order-executor-2"]]})
    assert len(ctl.table) == 2


def test_unknown_requests_and_processes_not_running_are_refused(
    control: tuple[Control, list[str]],
) -> None:
    ctl, said = control
    with pytest.raises(ControlError, match="unknown op"):
        ctl.handle({"op": "explode"})
    with pytest.raises(ControlError, match="unknown process"):
        ctl.handle({"op": "kill", "name": "launcher"})
    with pytest.raises(ControlError, match="not running"):
        ctl.handle({"op": "kill", "name": "order-executor-1"})
    with pytest.raises(ControlError, match="pause between"):
        ctl.handle({"op": "pause", "name": "order-queue", "seconds": 600})
    assert said == []


def test_status_names_every_process_with_its_state(control: tuple[Control, list[str]]) -> None:
    ctl, _ = control
    states = {p["name"]: (p["state"], p["pid"]) for p in ctl.status()["processes"]}
    assert states["order-queue"] == ("running", 10)
    assert states["order-executor-1"] == ("down", None)
