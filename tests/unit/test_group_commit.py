"""The group commit: writes waiting while a commit runs share the next one."""

from __future__ import annotations

import asyncio

import pytest

from bookstore.group_commit import GroupCommit


class Disk:
    """A commit function that records its batches; each can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail: Exception | None = None  # the next commit's failure

    async def commit(self, writes: list[str]) -> list[str | Exception]:
        self.batches.append(writes)
        await self.release.wait()
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        return [ValueError(w) if w.startswith("bad") else w.upper() for w in writes]


async def test_a_lone_write_is_committed_at_once() -> None:
    disk = Disk()
    commits = GroupCommit(disk.commit, max_batch=8)
    assert await commits.write("a") == "A"
    assert await commits.submit([]) == []  # nothing to write: no commit
    assert disk.batches == [["a"]]


async def test_writes_arriving_during_a_commit_share_the_next_one() -> None:
    disk = Disk()
    commits = GroupCommit(disk.commit, max_batch=8)
    disk.release.clear()
    first = asyncio.ensure_future(commits.write("a"))
    await asyncio.sleep(0)  # "a" is on its way to disk
    later = [asyncio.ensure_future(commits.write(w)) for w in "bcd"]
    await asyncio.sleep(0)
    assert not first.done()
    disk.release.set()
    assert await asyncio.gather(first, *later) == ["A", "B", "C", "D"]
    assert disk.batches == [["a"], ["b", "c", "d"]]
    assert (commits.batches, commits.writes) == (2, 4)


async def test_a_batch_is_bounded_and_a_unit_is_never_split() -> None:
    disk = Disk()
    commits = GroupCommit(disk.commit, max_batch=3)
    disk.release.clear()
    running = commits.submit(["x"])
    await asyncio.sleep(0)
    units = [commits.submit(["a", "b"]), commits.submit(["c", "d"]), commits.submit(list("efgh"))]
    disk.release.set()
    await asyncio.gather(running, *units)
    # Two units of two do not fit in three; a unit of four goes alone.
    assert disk.batches == [["x"], ["a", "b"], ["c", "d"], ["e", "f", "g", "h"]]
    assert await units[2] == ["E", "F", "G", "H"]


async def test_a_refused_write_fails_alone() -> None:
    disk = Disk()
    commits = GroupCommit(disk.commit, max_batch=8)
    outcomes = await commits.submit(["a", "bad", "c"])
    assert outcomes[0] == "A" and outcomes[2] == "C"
    assert isinstance(outcomes[1], ValueError)
    with pytest.raises(ValueError, match="bad"):
        await commits.write("bad")


async def test_a_failed_commit_fails_exactly_its_batch() -> None:
    disk = Disk()
    commits = GroupCommit(disk.commit, max_batch=2)
    disk.release.clear()
    doomed = [commits.submit(["a"]), commits.submit(["b"])]
    await asyncio.sleep(0)
    spared = commits.submit(["c"])  # waits for the next commit
    disk.fail = OSError("EIO")
    disk.release.set()
    for unit in doomed:
        with pytest.raises(OSError, match="EIO"):
            await unit
    assert await spared == ["C"]
    assert disk.batches == [["a", "b"], ["c"]]


async def test_a_caller_that_stops_waiting_leaves_its_write_and_the_others_be() -> None:
    disk = Disk()
    commits = GroupCommit(disk.commit, max_batch=8)
    disk.release.clear()
    gone = asyncio.ensure_future(commits.write("a"))
    stays = asyncio.ensure_future(commits.write("b"))
    await asyncio.sleep(0)
    gone.cancel()
    disk.release.set()
    assert await stays == "B"
    assert gone.cancelled()
    assert disk.batches == [["a", "b"]]  # committed all the same


async def test_close_commits_what_was_submitted_and_refuses_more() -> None:
    disk = Disk()
    commits = GroupCommit(disk.commit, max_batch=8)
    disk.release.clear()
    pending = commits.submit(["a"])
    closing = asyncio.ensure_future(commits.close())
    await asyncio.sleep(0)
    assert not closing.done()
    disk.release.set()
    await closing
    assert await pending == ["A"]
    with pytest.raises(RuntimeError, match="closed"):
        commits.submit(["b"])
