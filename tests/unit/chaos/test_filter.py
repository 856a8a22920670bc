"""The message filter as one process sees it: the rule file, and each message
dropped, delayed or refused (with a fake call context and fake time)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from bookstore.chaos.filter import MessageFilter
from bookstore.chaos.rules import Action, Rule, RuleTable

ME, PEER = "order-queue", "order-executor-3"


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self, remaining: float | None = 0.01) -> None:
        self.remaining = remaining
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def time_remaining(self) -> float | None:
        return self.remaining

    async def abort(self, code: grpc.StatusCode, details: str) -> Any:
        self.aborted = (code, details)
        raise Aborted(details)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, *rules: Rule, raw: str | None = None) -> None:
    path.write_text(json.dumps(RuleTable(rules).as_json()) if raw is None else raw)


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    return tmp_path / "rules.json"


async def test_no_rule_file_passes_everything(rules_file: Path) -> None:
    mf = MessageFilter(ME, rules_file)
    assert await mf.pass_message(PEER, ME, FakeContext())


async def test_drop_says_the_message_does_not_arrive(rules_file: Path) -> None:
    write(rules_file, Rule(PEER, ME, Action.DROP))
    mf = MessageFilter(ME, rules_file)
    assert not await mf.pass_message(PEER, ME, FakeContext())
    assert await mf.pass_message(ME, PEER, FakeContext())  # the other direction flows


async def test_a_dropped_call_waits_out_its_deadline_then_fails(rules_file: Path) -> None:
    mf = MessageFilter(ME, rules_file)
    context = FakeContext(remaining=0.01)
    with pytest.raises(Aborted):
        await mf.drop_call(PEER, ME, context)
    assert context.aborted is not None and context.aborted[0] is grpc.StatusCode.UNAVAILABLE


async def test_refuse_answers_unavailable(rules_file: Path) -> None:
    write(rules_file, Rule(PEER, ME, Action.REFUSE))
    context = FakeContext()
    with pytest.raises(Aborted, match="refuse"):
        await MessageFilter(ME, rules_file).pass_message(PEER, ME, context)
    assert context.aborted is not None and context.aborted[0] is grpc.StatusCode.UNAVAILABLE


async def test_delay_sleeps_then_delivers(
    rules_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    write(rules_file, Rule(PEER, ME, Action.DELAY, 250))
    assert await MessageFilter(ME, rules_file).pass_message(PEER, ME, FakeContext())
    assert slept == [0.25]


async def test_a_changed_rule_file_is_read_again_and_heal_restores(rules_file: Path) -> None:
    clock = Clock()
    mf = MessageFilter(ME, rules_file, clock=clock)
    write(rules_file, Rule(PEER, ME, Action.DROP))
    assert not await mf.pass_message(PEER, ME, FakeContext())
    write(rules_file)  # healed
    clock.now += 1.0
    assert await mf.pass_message(PEER, ME, FakeContext())


async def test_an_unreadable_rule_file_keeps_the_last_rules(rules_file: Path) -> None:
    clock = Clock()
    mf = MessageFilter(ME, rules_file, clock=clock)
    write(rules_file, Rule(PEER, ME, Action.DROP))
    assert not await mf.pass_message(PEER, ME, FakeContext())
    write(rules_file, raw="{not json")
    clock.now += 1.0
    assert not await mf.pass_message(PEER, ME, FakeContext())
