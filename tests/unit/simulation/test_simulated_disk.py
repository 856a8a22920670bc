"""The simulated disk keeps what was fsynced, and only that, across a crash."""

from __future__ import annotations

from bookstore.simulation.disk import Disk


def test_a_crash_loses_the_writes_not_yet_fsynced() -> None:
    disk = Disk()
    disk.put("epoch", 1)
    disk.append("log", 1, ["a", "b"])
    disk.fsync()
    disk.put("epoch", 2)
    disk.append("log", 3, ["c"])
    assert disk.get("epoch") == 2  # the process reads its own writes

    assert disk.crash() == 2

    assert disk.get("epoch") == 1
    assert disk.log("log") == ["a", "b"]


def test_an_append_replaces_the_log_from_its_start() -> None:
    disk = Disk()
    disk.append("log", 1, ["a", "b", "c"])
    disk.append("log", 2, ["x"])
    disk.fsync()
    assert disk.log("log") == ["a", "x"]


def test_a_rollback_forgets_the_pending_writes_only() -> None:
    disk = Disk()
    disk.put("k", "kept")
    disk.fsync()
    disk.put("k", "undone")
    disk.rollback()
    disk.fsync()
    assert disk.get("k") == "kept"
