"""How the executor reads a failed queue call (no queue needed: the errors are built here)."""

from __future__ import annotations

import grpc
import pytest

from bookstore.order_executor.service import QueueAnswer, classify


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ],
)
def test_a_queue_down_slow_or_busy_is_unreachable(code: grpc.StatusCode) -> None:
    answer, reason = classify(_error(code, "STORAGE_FAILED: the queue is stopping"))
    assert answer is QueueAnswer.UNREACHABLE
    assert reason == code.name.lower()


@pytest.mark.parametrize("named", ["STALE_EPOCH", "LEADER_ALIVE"])
def test_a_refused_epoch_or_a_live_leader_fences(named: str) -> None:
    answer, reason = classify(_error(grpc.StatusCode.FAILED_PRECONDITION, f"{named}: epoch 3"))
    assert answer is QueueAnswer.FENCED
    assert reason == f"{named}: epoch 3"


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (grpc.StatusCode.FAILED_PRECONDITION, "LEASE_LOST: lease 7 expired"),
        (grpc.StatusCode.NOT_FOUND, "UNKNOWN_ORDER: o-1"),
        (grpc.StatusCode.INVALID_ARGUMENT, "BAD_REQUEST: no items"),
    ],
)
def test_other_refusals_concern_only_the_request(code: grpc.StatusCode, details: str) -> None:
    answer, reason = classify(_error(code, details))
    assert answer is QueueAnswer.REFUSED
    assert reason == details
