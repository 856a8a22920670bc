"""The payment gRPC service: a thin servicer over the ledger, and its recovery.

Every ledger call runs on one database thread, so writes are serialized and
each is durable before its RPC answers. Writes that arrive while a batch is
on disk wait together and go as the next batch, in one transaction
(`group_commit.GroupCommit`: concurrent orders share an fsync). `Apply`
carries the two-phase commit's authorizes, captures and voids (the leader
executor batches its concurrent orders'): their writes are handed over
together, so they share one commit, and each operation has its own outcome,
reply or error. `TokenizeBatch` seals transaction verification's cards into
tokens on the loop, with no write (`tokens.py`). Requests are checked and
replies built in `wire.py`, where named result codes become gRPC status codes (`wire.status`).

At start the ledger's prepared txns are in doubt: `recovery.py` resolves them
from the queue's decision log.

No log line, error message or row holds a card number or a CVV: tokenizing
logs the brand and last four only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, cast

import grpc

from bookstore import grpcutil
from bookstore.commitment.participant import BadRequest, State, TxnError, UnknownTxn
from bookstore.group_commit import GroupCommit
from bookstore.payment import recovery, wire
from bookstore.payment.cards import BadCard, Behaviour, CardInfo
from bookstore.payment.ledger import (
    CURRENCY,
    Ledger,
    StorageFailure,
    TxnView,
    UnknownToken,
)
from bookstore.pb import common_pb2, payment_pb2, payment_pb2_grpc, queue_pb2_grpc
from bookstore.settings import Settings
from bookstore.telemetry import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")
Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type hints)

SERVICE_NAME = "bookstore.payment.Payment"
MAX_BATCH = 256  # most writes committed together, and most operations in one Apply
NO_ANSWER = "the processor did not answer"  # the timeout test card's DEADLINE_EXCEEDED


def _die(exc: BaseException) -> None:
    log.critical("payment ledger storage failed, stopping: %s", exc)
    os._exit(70)


class PaymentServicer(payment_pb2_grpc.PaymentServicer):
    def __init__(self, ledger: Ledger, on_fatal: Callable[[BaseException], None] = _die) -> None:
        self.ledger = ledger
        self.on_fatal = on_fatal
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="payment-db")
        self._commits: GroupCommit[Callable[[], Any], Any] = GroupCommit(
            self._commit, max_batch=MAX_BATCH
        )

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a ledger method on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """A ledger write, committed together with the writes waiting beside it."""
        result: T = await self._commits.write(functools.partial(fn, *args))
        return result

    async def write_all(self, writes: Sequence[Callable[[], Any]]) -> list[Any]:
        """Ledger writes (calls of its write methods) handed over together, so they share
        one commit: each one's result, or the error that refused it alone. A failure of
        the commit itself (StorageFailure) is raised."""
        return await self._commits.submit(writes)

    async def _commit(self, writes: list[Callable[[], Any]]) -> list[Any]:
        """One ledger transaction (one fsync) of the group commit."""
        return await self.call(self.ledger.run_batch, writes)

    async def close(self) -> None:
        await self._commits.close()
        await self.call(self.ledger.close)
        self._thread.shutdown(wait=True)

    async def _guarded(self, context: Context, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work`; our errors become their gRPC status (the one place)."""
        try:
            return await work()
        except (TxnError, BadCard) as exc:
            status = wire.status(exc)
            assert status is not None
            await context.abort(*status)
            raise
        except StorageFailure as exc:
            self.on_fatal(exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "STORAGE_FAILED: payment is stopping")
            raise

    async def TokenizeBatch(
        self, request: payment_pb2.TokenizeBatchRequest, context: Context
    ) -> payment_pb2.TokenizeBatchReply:
        async def work() -> payment_pb2.TokenizeBatchReply:
            if len(request.cards) > MAX_BATCH:
                raise BadRequest(f"at most {MAX_BATCH} cards in one call")
            outcomes: dict[int, payment_pb2.TokenizeOutcome] = {}
            cards: dict[int, CardInfo] = {}
            for i, c in enumerate(request.cards):
                try:
                    cards[i] = wire.checked_card(c)
                except (BadRequest, BadCard) as exc:
                    status = wire.status(exc)
                    assert status is not None
                    outcomes[i] = payment_pb2.TokenizeOutcome(error=wire.operation_error(*status))
            # Sealed here, on the loop: no write, no database thread (tokens.py).
            for i, card in cards.items():
                token = wire.token_reply(self.ledger.tokenize(card), card)
                outcomes[i] = payment_pb2.TokenizeOutcome(token=token)
            return payment_pb2.TokenizeBatchReply(outcomes=[outcomes[i] for i in sorted(outcomes)])

        return await self._guarded(context, work)

    async def Apply(
        self, request: payment_pb2.PaymentBatch, context: Context
    ) -> payment_pb2.PaymentBatchReply:
        async def work() -> payment_pb2.PaymentBatchReply:
            if len(request.operations) > MAX_BATCH:
                raise BadRequest(f"at most {MAX_BATCH} operations in one call")
            outcomes = await self._apply(request.operations)
            return payment_pb2.PaymentBatchReply(outcomes=outcomes)

        return await self._guarded(context, work)

    async def _apply(
        self, operations: Sequence[payment_pb2.PaymentOperation]
    ) -> list[payment_pb2.PaymentOutcome]:
        """Each operation's outcome; a StorageFailure fails them all (raised)."""
        outcomes: dict[int, payment_pb2.PaymentOutcome] = {}
        checked: dict[int, wire.Operation] = {}
        for i, op in enumerate(operations):
            try:
                checked[i] = wire.operation(op)
            except BadRequest as exc:
                outcomes[i] = wire.error_outcome(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        tokens = {o.auth.token for o in checked.values() if o.auth is not None}
        hanging = await self.call(self._timeout_cards, tokens) if tokens else set()
        writes: dict[int, Callable[[], Any]] = {}
        for i, o in checked.items():
            if o.auth is not None and o.auth.token in hanging:
                # The processor does not answer: said at once, holding up no other.
                outcomes[i] = wire.error_outcome(grpc.StatusCode.DEADLINE_EXCEEDED, NO_ANSWER)
            else:
                writes[i] = self._ledger_write(o)
        results = await self.write_all(list(writes.values()))
        written: dict[int, Any] = {}
        for i, result in zip(writes, results, strict=True):
            if not isinstance(result, BaseException):
                written[i] = result
            elif (status := wire.status(result)) is not None:
                outcomes[i] = wire.error_outcome(*status)
            else:
                raise result  # not a refusal: the whole call fails
        ids = {checked[i].txn_id for i in written if checked[i].auth is None}
        views = await self.call(self._views, ids) if ids else {}
        for i, result in written.items():
            outcomes[i] = self._answer(checked[i], result, views.get(checked[i].txn_id))
        return [outcomes[i] for i in range(len(operations))]

    def _ledger_write(self, o: wire.Operation) -> Callable[[], Any]:
        """The operation as a call of the ledger's write method."""
        if o.auth is not None:
            return functools.partial(self.ledger.authorize, o.txn_id, o.auth, o.epoch)
        if o.kind == "capture":
            return functools.partial(self.ledger.capture, o.txn_id, o.epoch)
        return functools.partial(self.ledger.void, o.txn_id, o.epoch, o.reason)

    def _views(self, txn_ids: set[str]) -> dict[str, TxnView | None]:
        return {t: self.ledger.transaction(t) for t in txn_ids}

    def _timeout_cards(self, tokens: set[str]) -> set[str]:
        """Those of `tokens` that are the timeout test card (on the database thread)."""
        hanging = set()
        for token in tokens:
            with contextlib.suppress(UnknownToken):  # the authorize itself refuses it
                if self.ledger.card(token).behaviour is Behaviour.TIMEOUT:
                    hanging.add(token)
        return hanging

    @staticmethod
    def _answer(o: wire.Operation, result: Any, view: TxnView | None) -> payment_pb2.PaymentOutcome:
        """A written operation's outcome, logged."""
        if o.auth is not None:
            log.info(
                "authorize txn=%s epoch=%d amount=%d approved=%s %s",
                o.txn_id,
                o.epoch,
                o.auth.amount_cents,
                result.yes,
                result.reason,
            )
            reply = payment_pb2.AuthorizeReply(
                approved=result.yes, reason=result.reason, state=result.state.value
            )
            return payment_pb2.PaymentOutcome(authorized=reply)
        log.info("%s txn=%s epoch=%d", o.kind, o.txn_id, o.epoch)
        if view is None:
            exc = UnknownTxn(f"no txn {o.txn_id}")
            return wire.error_outcome(grpc.StatusCode.NOT_FOUND, str(exc))
        return payment_pb2.PaymentOutcome(transaction=wire.transaction_pb(view))

    async def Status(
        self, request: common_pb2.Empty, context: Context
    ) -> payment_pb2.PaymentStatus:
        s = await self.call(self.ledger.status)
        return payment_pb2.PaymentStatus(
            captured_cents=s.captured_cents,
            currency=CURRENCY,
            prepared=s.counts[State.PREPARED],
            committed=s.counts[State.COMMITTED],
            aborted=s.counts[State.ABORTED],
            in_doubt=[wire.transaction_pb(v) for v in s.in_doubt],
            epoch=s.epoch,
            tokens=s.tokens,
            pid=os.getpid(),
        )


def create_server(bind: str, servicer: PaymentServicer) -> tuple[grpc.aio.Server, Any, int]:
    """The payment server bound to `bind` (port 0: a free one); not yet started."""
    return grpcutil.create_server(
        bind,
        lambda server: payment_pb2_grpc.add_PaymentServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )


def ledger_path(settings: Settings) -> Path:
    return settings.data_dir / "payment" / "ledger.db"


async def count_in_doubt(servicer: PaymentServicer, interval_s: float = 1.0) -> None:
    """Keep `bookstore_in_doubt_transactions` at the ledger's prepared txns (on the
    database thread, as every ledger read)."""
    while True:
        with contextlib.suppress(Exception):
            metrics.IN_DOUBT.set(len(await servicer.call(servicer.ledger.prepared)))
        await asyncio.sleep(interval_s)


async def serve(settings: Settings, replica_id: int | None = None) -> None:
    servicer = PaymentServicer(Ledger(ledger_path(settings)))
    bind = settings.bind_address("payment")
    server, health, port = create_server(bind, servicer)
    await server.start()
    await grpcutil.set_serving(health, [SERVICE_NAME])
    log.info("payment serving on %s (port %d)", bind, port)
    channel = grpcutil.channel(settings.order_queue_address)
    queue = cast("queue_pb2_grpc.OrderQueueAsyncStub", queue_pb2_grpc.OrderQueueStub(channel))
    decisions = recovery.queue_decisions(queue, settings.rpc_timeout_s)
    recovering = asyncio.create_task(
        recovery.recover(servicer, decisions, settings.payment_recovery_interval_s),
        name="recovery",
    )
    counting = asyncio.create_task(count_in_doubt(servicer), name="in-doubt")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("payment stopping")
    recovering.cancel()
    counting.cancel()
    await server.stop(grace=1.0)
    await channel.close()
    with contextlib.suppress(Exception):
        await servicer.close()
