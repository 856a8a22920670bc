"""The whole suite's rules: no hypothesis deadline, and the systems tests share.

A system (`bookstore up`) takes seconds to start, so the tests that only use one
share it: `system` is the default system and `chaos_system` the one with chaos on.
It is started by the first test that needs it and stopped after the last of a row.
After each test that used one, the system must be settled again (every service
healthy, the highest executor leading): a test that kills a process waits for its
restart, or it fails there (and the system is started afresh), not the test after it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from harness import System, launch, stop_system
from hypothesis import settings

# A deadline is a timed assert: on a loaded machine it fails examples that are only slow.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

NEXT_ITEM = pytest.StashKey["pytest.Item | None"]()


class SharedSystem:
    """One system for a run of tests: started by the first, stopped after the last
    (or at once when a test leaves it unsettled, so the next one gets a fresh one)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.running: System | None = None

    def get(self) -> System:
        if self.running is None:
            self.running = launch(self.env)
            self.running.wait_healthy()
        return self.running

    def stop(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            stop_system(running)


def _shared(request: pytest.FixtureRequest, shared: SharedSystem, name: str) -> Iterator[System]:
    running = shared.get()
    yield running
    try:
        running.wait_settled()
    except BaseException:
        shared.stop()
        raise
    following = request.node.stash.get(NEXT_ITEM, None)
    if following is None or name not in following.fixturenames:
        shared.stop()


@pytest.fixture(scope="session")
def shared_system() -> Iterator[SharedSystem]:
    shared = SharedSystem({})
    yield shared
    shared.stop()


@pytest.fixture
def system(request: pytest.FixtureRequest, shared_system: SharedSystem) -> Iterator[System]:
    """The system with the default settings, shared by every test that does not need
    its own; settled again after the test."""
    yield from _shared(request, shared_system, "shared_system")


@pytest.fixture(scope="session")
def shared_chaos_system() -> Iterator[SharedSystem]:
    # The scenarios' loads order a few hundred copies each: stock for all of them.
    shared = SharedSystem({"BOOKSTORE_CHAOS": "1", "BOOKS_INITIAL_STOCK": "1000000"})
    yield shared
    shared.stop()


@pytest.fixture
def chaos_system(
    request: pytest.FixtureRequest, shared_chaos_system: SharedSystem
) -> Iterator[System]:
    """The shared system with chaos on (BOOKSTORE_CHAOS=1); settled again after the test."""
    yield from _shared(request, shared_chaos_system, "shared_chaos_system")


@pytest.hookimpl(tryfirst=True)  # before the fixtures' teardown
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    item.stash[NEXT_ITEM] = nextitem
