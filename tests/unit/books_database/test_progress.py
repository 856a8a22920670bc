"""The primary's record of its backups (progress.py): when it has more to send."""

from __future__ import annotations

from bookstore.books_database.messages import AppendReply
from bookstore.books_database.progress import Backups

EVERY = 1.0  # a snapshot in flight is sent again only after this


def test_a_backup_waiting_for_its_snapshot_is_not_behind_until_one_is_due() -> None:
    backups = Backups([2, 3], last_index=100, now=0.0)  # both sent everything
    backups.snapshot_sent(2, 90, now=1.0)  # the log is compacted up to 80
    # Its answer to a heartbeat sent before the snapshot landed: a refusal naming 10.
    backups.on_reply(AppendReply(1, 2, False, 10, 1), now=1.01)
    assert backups.of[2].next <= 80  # what it lacks is compacted: only a snapshot serves it
    assert not backups.behind(100, snap_index=80, now=1.02, every=EVERY)  # one is in flight
    assert backups.behind(100, snap_index=80, now=2.0, every=EVERY)  # another is due


def test_a_backup_that_can_be_sent_entries_is_behind() -> None:
    backups = Backups([2, 3], last_index=100, now=0.0)
    assert not backups.behind(100, snap_index=80, now=0.0, every=EVERY)
    assert backups.behind(101, snap_index=80, now=0.0, every=EVERY)  # a new entry
    backups.on_reply(AppendReply(1, 3, False, 85, 1), now=0.1)  # 3 lacks 86 on
    assert backups.behind(100, snap_index=80, now=0.1, every=EVERY)
