"""End to end: the queue's disk fills up under the whole system, then space returns.

The queue's directory (`BOOKSTORE_DATA_DIR/order-queue`) is a small tmpfs. Filled to
the last byte, checkouts answer 503 `DISK_FULL` naming the full disk, the queue keeps
running (no crash loop), and once space is freed checkouts are approved again.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from checkout_requests import course_page_request
from harness import launch
from tmpfs_disk import fill, small_tmpfs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SEED = random.randrange(1 << 32)
print(f"test_checkout_disk_full seed={SEED}")


def _checkout(client: httpx.Client) -> httpx.Response:
    return client.post("/checkout", json=course_page_request())


def test_a_full_queue_disk_gives_a_503_naming_it_then_recovers() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bookstore-e2e-disk-"))
    try:
        with small_tmpfs(data_dir / "order-queue", size="8m") as queue_dir:
            system = launch(data_dir=data_dir)
            try:
                with httpx.Client(base_url=system.base_url, timeout=60.0) as client:
                    assert _checkout(client).json()["status"] == "Order Approved"
                    queue_pid = system.pid("order-queue")
                    filler = fill(queue_dir)
                    answers = []
                    for _ in range(30):  # the database's free pages take a few orders
                        answers.append(_checkout(client))
                        if answers[-1].status_code == 503:
                            break
                    full = answers[-1]
                    assert full.status_code == 503, [a.text for a in answers]
                    error = full.json()["error"]
                    assert error["code"] == "DISK_FULL" and "disk is full" in error["message"]
                    assert full.headers["access-control-allow-origin"] == "*"
                    assert {a.status_code for a in answers} <= {200, 503}

                    filler.unlink()
                    deadline = time.monotonic() + 60
                    while (answer := _checkout(client)).status_code != 200:
                        assert time.monotonic() < deadline, answer.text
                        time.sleep(0.5)
                    assert answer.json()["status"] == "Order Approved"
                    assert system.pid("order-queue") == queue_pid  # no restart, no crash loop
            finally:
                survivors = system.stop()
                assert not survivors, f"processes survived the launcher's stop: {survivors}"
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
