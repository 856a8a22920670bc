"""The payment gRPC service: a thin servicer over the ledger, and its recovery.

Every ledger call runs on one database thread, so writes are serialized and
each is durable before its RPC answers. Writes that arrive while a batch is
on disk wait together and go as the next batch, in one transaction (group
commit: concurrent orders share an fsync). `Apply` carries the two-phase
commit's authorizes, captures and voids (the leader executor batches its
concurrent orders'): their writes are handed over together, so they share one
commit, and each operation has its own outcome, reply or error.
`TokenizeBatch` does the same for transaction verification's cards. Named
result codes become gRPC status codes here and only here (`_status`).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, cast

import grpc

from bookstore import grpcutil
from bookstore.commitment.participant import BadRequest, State, TxnError, UnknownTxn
from bookstore.commitment.status import REFUSALS
from bookstore.payment import recovery
from bookstore.payment.cards import BadCard, Behaviour, CardInfo, card_info
from bookstore.payment.ledger import (
    CURRENCY,
    Authorization,
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
MAX_ID_CHARS = 128
MAX_AMOUNT_CENTS = 10**9
MAX_CARD_FIELD_CHARS = 64
MAX_REASON_CHARS = 512  # a void's reason is kept up to this
MAX_BATCH = 256  # most writes committed together, and most operations in one Apply
NO_ANSWER = "the processor did not answer"  # the timeout test card's DEADLINE_EXCEEDED


# The participant's refusals read as the books database's (one table); then payment's own.
_CODES = REFUSALS | {UnknownToken.code: grpc.StatusCode.NOT_FOUND}


def _status(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The gRPC status a refused request ends with; None for any other error."""
    if isinstance(exc, TxnError):
        return _CODES.get(exc.code, grpc.StatusCode.INVALID_ARGUMENT), str(exc)
    if isinstance(exc, BadCard):
        return grpc.StatusCode.INVALID_ARGUMENT, f"BAD_CARD: {exc}"
    return None


def _error(code: grpc.StatusCode, message: str) -> payment_pb2.PaymentOutcome:
    return payment_pb2.PaymentOutcome(error=_operation_error(code, message))


def _operation_error(code: grpc.StatusCode, message: str) -> payment_pb2.OperationError:
    return payment_pb2.OperationError(code=code.value[0], message=message)


def _card(request: payment_pb2.TokenizeRequest) -> CardInfo:
    """What the ledger may keep of the request's card, or BadRequest / BadCard."""
    fields = (request.number, request.expiration, request.cvv)
    if any(len(f) > MAX_CARD_FIELD_CHARS for f in fields):
        raise BadRequest("card field too long")
    return card_info(*fields)


def _token_reply(token: str, card: CardInfo) -> payment_pb2.TokenizeReply:
    log.info("tokenized brand=%s last4=%s", card.brand, card.last4)
    return payment_pb2.TokenizeReply(
        token=token, brand=card.brand, last4=card.last4, expiration=card.expiration
    )


@dataclass(frozen=True)
class _Operation:
    """One operation of an Apply, checked."""

    kind: str  # "authorize" | "capture" | "void"
    txn_id: str
    epoch: int
    auth: Authorization | None = None  # of an authorize
    reason: str = ""  # of a void


def _operation(op: payment_pb2.PaymentOperation) -> _Operation:
    """The operation, or BadRequest."""
    kind = op.WhichOneof("op")
    if kind == "authorize":
        a = op.authorize
        return _Operation(kind, _txn_id(a), _epoch(a), auth=authorization(a))
    if kind == "capture":
        return _Operation(kind, _txn_id(op.capture), _epoch(op.capture))
    if kind == "void":
        reason = op.void.reason[:MAX_REASON_CHARS]
        return _Operation(kind, _txn_id(op.void), _epoch(op.void), reason=reason)
    raise BadRequest("an operation is required: authorize, capture or void")


def _die(exc: BaseException) -> None:
    log.critical("payment ledger storage failed, stopping: %s", exc)
    os._exit(70)


def _txn_id(message: Any) -> str:
    txn_id = str(message.txn_id.value)
    if not 0 < len(txn_id) <= MAX_ID_CHARS:
        raise BadRequest(f"txn id must be 1..{MAX_ID_CHARS} characters")
    return txn_id


def _epoch(message: Any) -> int:
    if message.epoch <= 0:
        raise BadRequest("the coordinator's epoch is required")
    return int(message.epoch)


def authorization(request: payment_pb2.AuthorizeRequest) -> Authorization:
    """The request's authorization, or BadRequest (nothing is read or written)."""
    if not 0 < len(request.token) <= MAX_ID_CHARS:
        raise BadRequest("a token is required")
    if not 0 < request.amount_cents <= MAX_AMOUNT_CENTS:
        raise BadRequest(f"amount_cents must be 1..{MAX_AMOUNT_CENTS}")
    if request.currency != CURRENCY:
        raise BadRequest(f"currency must be {CURRENCY}, not {request.currency!r}")
    return Authorization(request.token, int(request.amount_cents), request.currency)


def transaction_pb(view: TxnView) -> payment_pb2.Transaction:
    r = view.record
    return payment_pb2.Transaction(
        txn_id=common_pb2.OrderId(value=r.txn_id),
        state=r.state.value,
        amount_cents=r.request.amount_cents if r.request else 0,
        currency=r.request.currency if r.request else "",
        epoch=r.epoch,
        reason=r.reason,
        brand=view.brand,
        last4=view.last4,
        updated_at=view.updated_at,
    )


class PaymentServicer(payment_pb2_grpc.PaymentServicer):
    def __init__(self, ledger: Ledger, on_fatal: Callable[[BaseException], None] = _die) -> None:
        self.ledger = ledger
        self.on_fatal = on_fatal
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="payment-db")
        self._pending: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a ledger method on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Hand a ledger write to the writer: writes submitted before the event loop
        next runs the writer share one commit. The future holds its result."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((functools.partial(fn, *args), future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="ledger-writer")
        return future

    async def _write_batches(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = await self.call(self.ledger.run_batch, [w for w, _ in batch])
            except Exception as exc:  # StorageFailure: every caller's RPC reports it
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller gave up meanwhile
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
        await self.call(self.ledger.close)
        self._thread.shutdown(wait=True)

    async def _guarded(self, context: Context, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work`; our errors become their gRPC status (the one place)."""
        try:
            return await work()
        except (TxnError, BadCard) as exc:
            status = _status(exc)
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
                    cards[i] = _card(c)
                except (BadRequest, BadCard) as exc:
                    status = _status(exc)
                    assert status is not None
                    outcomes[i] = payment_pb2.TokenizeOutcome(error=_operation_error(*status))
            writes = {i: self.submit(self.ledger.tokenize, card) for i, card in cards.items()}
            # Together: one commit. A failure here is the ledger's (StorageFailure): all fail.
            tokens = await asyncio.gather(*writes.values())
            for i, token in zip(writes, tokens, strict=True):
                outcomes[i] = payment_pb2.TokenizeOutcome(token=_token_reply(token, cards[i]))
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
        checked: dict[int, _Operation] = {}
        for i, op in enumerate(operations):
            try:
                checked[i] = _operation(op)
            except BadRequest as exc:
                outcomes[i] = _error(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        tokens = {o.auth.token for o in checked.values() if o.auth is not None}
        hanging = await self.call(self._timeout_cards, tokens) if tokens else set()
        writes: dict[int, asyncio.Future[Any]] = {}
        for i, o in checked.items():
            if o.auth is not None and o.auth.token in hanging:
                # The processor does not answer: said at once, holding up no other.
                outcomes[i] = _error(grpc.StatusCode.DEADLINE_EXCEEDED, NO_ANSWER)
            elif o.auth is not None:
                writes[i] = self.submit(self.ledger.authorize, o.txn_id, o.auth, o.epoch)
            elif o.kind == "capture":
                writes[i] = self.submit(self.ledger.capture, o.txn_id, o.epoch)
            else:
                writes[i] = self.submit(self.ledger.void, o.txn_id, o.epoch, o.reason)
        results = await asyncio.gather(*writes.values(), return_exceptions=True)
        written: dict[int, Any] = {}
        for i, result in zip(writes, results, strict=True):
            if not isinstance(result, BaseException):
                written[i] = result
            elif (status := _status(result)) is not None:
                outcomes[i] = _error(*status)
            else:
                raise result  # StorageFailure: the whole call fails
        ids = {checked[i].txn_id for i in written if checked[i].auth is None}
        views = await self.call(self._views, ids) if ids else {}
        for i, result in written.items():
            outcomes[i] = self._answer(checked[i], result, views.get(checked[i].txn_id))
        return [outcomes[i] for i in range(len(operations))]

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
    def _answer(o: _Operation, result: Any, view: TxnView | None) -> payment_pb2.PaymentOutcome:
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
            return _error(grpc.StatusCode.NOT_FOUND, str(exc))
        return payment_pb2.PaymentOutcome(transaction=transaction_pb(view))

    async def _view(self, txn_id: str) -> payment_pb2.Transaction:
        view = await self.call(self.ledger.transaction, txn_id)
        if view is None:
            raise UnknownTxn(f"no txn {txn_id}")
        return transaction_pb(view)

    async def GetTransaction(
        self, request: common_pb2.OrderId, context: Context
    ) -> payment_pb2.Transaction:
        return await self._guarded(context, lambda: self._view(request.value))

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
            in_doubt=[transaction_pb(v) for v in s.in_doubt],
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
