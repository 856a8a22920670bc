"""The whole suite's rules: no hypothesis deadline, the systems tests share, and how
scripts/test spreads the tests over its workers (pytest-xdist, `--dist loadgroup`).

A system (`bookstore up`) takes seconds to start, so the tests that only use one
share it: `system` is the default system and `chaos_system` the one with chaos on.
Their tests run in a row (on one worker), and the system is stopped after the last.
After each test that used one, the system must be settled again (every service
healthy, the highest executor leading): a test that kills a process waits for its
restart, or it fails there (and the system is started afresh), not the test after it.

Work units for the workers: every test of one shared system goes to one worker
(the `system`, `chaos` groups), the multi-host tests too (`netns`), a module with a
module-scoped fixture stays whole, a folder with a session-scoped fixture of its
own (tests/deploy) too; every other test is a unit of its own. The dearest units
come first so that the short ones fill the gaps at the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping

import pytest
from _pytest.nodeid import NodeId
from harness import System, launch, stop_system
from hypothesis import settings

# A deadline is a timed assert: on a loaded machine it fails examples that are only slow.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

NEXT_ITEM = pytest.StashKey["pytest.Item | None"]()
# A shared system's session fixture -> its group of tests (one worker runs them all).
SHARED = {"shared_system": "system", "shared_chaos_system": "chaos"}
# Work units in this order: the long ones first.
FIRST = ("system", "chaos", "netns")
FOLDERS = ("browser", "netns", "e2e", "deploy", "integration", "unit")


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


def _group(item: pytest.Item) -> str | None:
    """The work unit `item` belongs to, or None for a unit of its own."""
    for name, group in SHARED.items():
        if name in item.fixturenames:
            return group
    if item.path.parent.name == "netns":
        return "netns"
    infos = getattr(item, "_fixtureinfo", None)
    defs = [d for ds in (infos.name2fixturedefs.values() if infos else ()) for d in ds]
    folders = {d.baseid for d in defs if d.scope == "session" and d.baseid.startswith("tests/")}
    if folders:
        return min(folders)
    if any(d.scope in ("module", "class", "package") for d in defs):
        return item.path.name
    return None


def _rank(item: pytest.Item, group: str | None) -> tuple[int, int]:
    first = FIRST.index(group) if group in FIRST else len(FIRST)
    folder = item.path.relative_to(item.config.rootpath).parts[1]
    return first, FOLDERS.index(folder) if folder in FOLDERS else len(FOLDERS)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _unique_node_ids(items)
    groups = {item.nodeid: _group(item) for item in items}
    items.sort(key=lambda item: _rank(item, groups[item.nodeid]))
    for item in items:
        group = groups[item.nodeid]
        if group is not None and not any(item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(group))
        if group is not None and getattr(config.option, "loadgroup", False):
            _name_group(item, group)


def _unique_node_ids(items: list[pytest.Item]) -> None:
    """Give every item a node id of its own: xdist schedules tests by node id, and
    schemathesis gives its cases (one per API operation) their function's id, so all
    but one of them would never run. Their names tell them apart ("...[GET /healthz]")."""
    seen = Counter(item.nodeid for item in items)
    for item in items:
        if seen[item.nodeid] > 1:
            parent = item.parent.nodeid if item.parent is not None else ""
            item._id = NodeId.parse(f"{parent}::{item.name}")  # type: ignore[attr-defined]


def _name_group(item: pytest.Item, group: str) -> None:
    """Give the item the node id `--dist loadgroup` schedules by ("...::test@group").

    pytest-xdist 3.8 writes it to `item._nodeid`, which pytest 9 no longer reads (node
    ids are `NodeId`s in `item._id`): without this every test would be its own unit."""
    item._id = NodeId.parse(f"{item.nodeid}@{group}")  # type: ignore[attr-defined]
