"""A payment service's recovery: prepared txns ask the coordinator log.

A participant never decides a prepared txn alone. At start the ledger's
prepared txns are in doubt: each is looked up in the queue's decision log
(GetDecision); COMMIT or ABORT is applied; with no decision logged yet the txn
keeps waiting (its order is still in the queue and the next leader redrives
it), and is asked about again every `payment_recovery_interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc

from bookstore import grpcutil
from bookstore.commitment.participant import Decision, State
from bookstore.pb import common_pb2, queue_pb2_grpc

if TYPE_CHECKING:
    from bookstore.payment.service import PaymentServicer

log = logging.getLogger(__name__)
# Asks the coordinator log for a txn's decision: None when none is logged (yet).
DecisionSource = Callable[[str], Awaitable[Decision | None]]


async def resolve_in_doubt(
    servicer: PaymentServicer, get_decision: DecisionSource, txn_ids: list[str]
) -> list[str]:
    """Apply the logged decision of each txn; the ids still waiting for one."""
    waiting = []
    for txn_id in txn_ids:
        decision = await get_decision(txn_id)
        record = await servicer.call(servicer.ledger.resolve, txn_id, decision)
        if record is not None and record.state is State.PREPARED:
            waiting.append(txn_id)
        elif decision is not None:
            log.info("recovered txn=%s decision=%s", txn_id, decision.value)
    return waiting


def queue_decisions(stub: queue_pb2_grpc.OrderQueueAsyncStub, timeout_s: float) -> DecisionSource:
    """GetDecision at the queue; an unreachable queue counts as no decision yet."""

    async def get_decision(txn_id: str) -> Decision | None:
        try:
            reply = await stub.GetDecision(common_pb2.OrderId(value=txn_id), timeout=timeout_s)
        except grpc.RpcError as exc:
            log.warning(
                "decision of txn=%s unknown: %s", txn_id, grpcutil.translate("order-queue", exc)
            )
            return None
        return Decision(reply.decision) if reply.decision else None

    return get_decision


async def recover(
    servicer: PaymentServicer, get_decision: DecisionSource, interval_s: float
) -> None:
    """Resolve the txns prepared before this start, asking again until all are decided."""
    waiting = await servicer.call(servicer.ledger.prepared)
    if waiting:
        log.info("in doubt at start: %d prepared txns", len(waiting))
    while waiting:
        waiting = await resolve_in_doubt(servicer, get_decision, waiting)
        if waiting:
            await asyncio.sleep(interval_s)
