"""Who may call what: one table, enforced by one server interceptor.

The table maps a full gRPC method name (`/package.Service/Method`) or a whole
service (`package.Service`) to the SPIFFE ids allowed to call it; an exact
method entry wins over its service's. A method in no entry is refused
(default deny), so a new RPC is closed until someone decides who may call it.

- only the orchestrator opens checkout Sessions, enqueues, watches executions
  and reads an order's state;
- only the configured executor replicas register, dequeue, renew, complete
  and send each other election messages;
- only the three checkout services exchange clocks;
- only transaction verification turns a card into a payment token, and only
  the executors move money or log two-phase-commit decisions;
- only the executors reserve, commit and release stock, only the books
  database's replicas replicate to each other, and transaction verification
  and the executors read the stock;
- health, reflection and the status reads are open to every authenticated
  caller (the launcher's probes, the cluster view, grpcurl with a cert).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc

from bookstore.identity import spiffe_id
from bookstore.settings import CHECKOUT_SERVICES, Settings

log = logging.getLogger(__name__)

ANY_AUTHENTICATED = "*"  # in an entry: every caller with a certificate of our CA
Policy = Mapping[str, frozenset[str]]

_CHECKOUT = "bookstore.checkout.CheckoutParticipant"
_QUEUE = "bookstore.queue.OrderQueue"
_EXECUTOR = "bookstore.executor.OrderExecutor"
_PAYMENT = "bookstore.payment.Payment"
_BOOKS = "bookstore.books.BooksDatabase"
OPEN_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


def policy_for(settings: Settings) -> dict[str, frozenset[str]]:
    """The authorization table of this deployment."""
    orchestrator = frozenset({spiffe_id("orchestrator")})
    executors = frozenset(spiffe_id("order-executor", i) for i in settings.order_executor_addresses)
    checkout = frozenset(spiffe_id(s) for s in CHECKOUT_SERVICES)
    payment = frozenset({spiffe_id("payment")})
    replicas = frozenset(spiffe_id("books-database", i) for i in settings.books_database_addresses)
    anyone = frozenset({ANY_AUTHENTICATED})
    table = {
        f"/{_CHECKOUT}/Session": orchestrator,
        f"/{_CHECKOUT}/Exchange": checkout,
        f"/{_CHECKOUT}/Stats": anyone,
        f"/{_QUEUE}/EnqueueBatch": orchestrator,
        f"/{_QUEUE}/WatchExecutions": orchestrator,
        f"/{_QUEUE}/GetOrder": orchestrator,
        f"/{_QUEUE}/RegisterLeader": executors,
        f"/{_QUEUE}/Dequeue": executors,
        f"/{_QUEUE}/RenewLease": executors,
        f"/{_QUEUE}/Status": anyone,
        # The two-phase-commit decision log: written by the leader executor (log_decision
        # in a LeaderBatch, beside its completes, each naming its replica), read by the
        # participants that recover (payment) and by the cluster view.
        f"/{_QUEUE}/LeaderBatch": executors,
        f"/{_QUEUE}/GetDecision": executors | payment,
        f"/{_QUEUE}/ListDecisions": anyone,
        # Cards become tokens in transaction verification (event c); only the
        # coordinator (the leader executor) moves money.
        f"/{_PAYMENT}/TokenizeBatch": frozenset({spiffe_id("transaction-verification")}),
        f"/{_PAYMENT}/Apply": executors,  # authorize, capture and void
        f"/{_PAYMENT}/Status": anyone,
        f"/{_EXECUTOR}/Deliver": executors,
        f"/{_EXECUTOR}/Status": anyone,
        f"/{_EXECUTOR}/Commitment": anyone,  # an order's two-phase-commit trace (cluster view)
        # Stock: the coordinator (the leader executor) reserves and commits; the
        # launcher's identity is the operator's (`SetStock` by hand).
        # Stock reads: event a (transaction verification), the executors, and the
        # orchestrator's live stock in GET /api/books.
        f"/{_BOOKS}/ReadStock": executors
        | {spiffe_id("transaction-verification"), spiffe_id("orchestrator")},
        f"/{_BOOKS}/Write": executors,  # reserves, commits and releases
        f"/{_BOOKS}/SetStock": frozenset({spiffe_id("launcher")}),
        f"/{_BOOKS}/Deliver": replicas,
        f"/{_BOOKS}/Status": anyone,
        f"/{_BOOKS}/OrderEvents": anyone,  # an order's replication trail (cluster view)
    }
    table.update({service: anyone for service in OPEN_SERVICES})
    return table


def allowed(policy: Policy, method: str, caller: str | None) -> bool:
    """May `caller` (a SPIFFE id, None without one) call `method`?"""
    if caller is None:
        return False
    entry = policy.get(method)
    if entry is None:
        entry = policy.get(method.lstrip("/").partition("/")[0], frozenset())
    return caller in entry or ANY_AUTHENTICATED in entry


def caller_identity(context: Any) -> str | None:
    """The caller's SPIFFE id from its verified client certificate, if any.

    gRPC sets `peer_spiffe_id` only for a certificate with exactly one URI SAN
    that is a valid SPIFFE id, and only after the handshake verified it
    against our CA; a plaintext caller has no auth context at all."""
    values = (context.auth_context() or {}).get("peer_spiffe_id") or []
    return values[0].decode() if len(values) == 1 else None


def caller_replica(context: Any, service: str) -> int | None:
    """The replica id in the caller's identity when it is a replica of
    `service` (`spiffe://bookstore/order-executor/3` -> 3), else None."""
    caller = caller_identity(context) or ""
    prefix = spiffe_id(service) + "/"
    rid = caller.removeprefix(prefix)
    return int(rid) if caller.startswith(prefix) and rid.isdigit() else None


def replica_refusal(context: Any, service: str, claimed: int) -> str | None:
    """Why the caller may not speak for replica `claimed` of `service` (None: it may):
    its certificate is another's. Without TLS nobody has an identity and there is
    nothing to check (the switch's documented risk)."""
    if context.auth_context().get("transport_security_type") != [b"ssl"]:
        return None
    if caller_replica(context, service) == claimed:
        return None
    who = caller_identity(context) or "a caller without a bookstore identity"
    log.warning("refused replica id claimed=%d caller=%s", claimed, who)
    return f"{who} may not speak for {service} replica {claimed}"


async def require_replica(context: Any, service: str, claimed: int) -> None:
    """Abort with PERMISSION_DENIED "NOT_ALLOWED: ..." unless the caller's certificate
    is that of replica `claimed` of `service` (see `replica_refusal`)."""
    refusal = replica_refusal(context, service, claimed)
    if refusal is not None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"NOT_ALLOWED: {refusal}")


Check = Callable[[Any], Awaitable[None]]


def _guard(handler: grpc.RpcMethodHandler, check: Check) -> grpc.RpcMethodHandler:
    """The same handler with `check(context)` run before the method itself."""
    ser = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    unary = handler.unary_unary or handler.stream_unary
    if unary is not None:  # one answer: a coroutine

        async def guarded_unary(request: Any, context: Any) -> Any:
            await check(context)
            return await unary(request, context)

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(guarded_unary, **ser)
        return grpc.stream_unary_rpc_method_handler(guarded_unary, **ser)

    streaming = handler.unary_stream or handler.stream_stream

    async def guarded_stream(request: Any, context: Any) -> AsyncIterator[Any]:
        await check(context)
        answer = streaming(request, context)
        if inspect.isasyncgen(answer):
            async for item in answer:
                yield item
        else:  # a handler that writes with context.write()
            await answer

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(guarded_stream, **ser)
    return grpc.stream_stream_rpc_method_handler(guarded_stream, **ser)


class Authorization(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses every call the policy does not allow, with PERMISSION_DENIED
    "NOT_ALLOWED: <caller> may not call <method>"."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: Any,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method

        async def check(context: Any) -> None:
            caller = caller_identity(context)
            if allowed(self.policy, method, caller):
                return
            who = caller or "a caller without a bookstore identity"
            log.warning("refused call method=%s caller=%s", method, who)
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"NOT_ALLOWED: {who} may not call {method}"
            )

        return _guard(handler, check)


def server_interceptors(settings: Settings) -> list[grpc.aio.ServerInterceptor]:
    """What every server installs: the authorization check, unless TLS is off
    (then nobody has an identity to check)."""
    return [Authorization(policy_for(settings))] if settings.tls else []
