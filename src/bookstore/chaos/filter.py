"""The switchable message filter in the gRPC adapters of every process.

`configure(name, rules_path)` (called by `bookstore serve` when chaos is on) makes
`grpcutil` install two interceptors: the client one stamps every outgoing call
with this process's name; the server one looks up the rule for each message
between the caller and this process, in both directions, and drops, delays or
refuses it. For streams the rule is applied per message (requests read through
the request iterator, responses yielded by the handler). Processes share one
rule file, written by the launcher; it is re-read when it changes (checked at
most every RELOAD_S), so a change reaches every process within a moment and no
process needs a control port of its own. With chaos off, nothing is installed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from bookstore.chaos.rules import Action, RuleTable

log = logging.getLogger(__name__)

CALLER_KEY = "bookstore-process"
RELOAD_S = 0.05
DROP_WAIT_CAP_S = 30.0  # a dropped call without a deadline is answered after this


class MessageFilter:
    """The rules as seen by one process, re-read from `rules_path` when it changes."""

    def __init__(self, name: str, rules_path: Path, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.rules_path = rules_path
        self._clock = clock
        self._table = RuleTable()
        self._checked = float("-inf")
        self._text = "[]"

    def table(self) -> RuleTable:
        now = self._clock()
        if now - self._checked >= RELOAD_S:
            self._checked = now
            self._reload()
        return self._table

    def _reload(self) -> None:
        try:
            text = self.rules_path.read_text()
        except FileNotFoundError:
            text = "[]"
        except OSError as exc:
            log.warning(
                "chaos: unreadable rule file %s (%s); keeping the rules", self.rules_path, exc
            )
            return
        if text == self._text:
            return
        self._text = text
        try:
            table = RuleTable.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                "chaos: malformed rule file %s (%s); keeping the rules", self.rules_path, exc
            )
            return
        if table.rules() != self._table.rules():
            log.warning(
                "chaos: rules now %s",
                "; ".join(r.describe() for r in table.rules()) or "none (healed)",
            )
        self._table = table

    async def pass_message(self, src: str, dst: str, context: Any) -> bool:
        """Apply the rule from `src` to `dst` to one message: False to drop it.

        Refusal aborts the call with UNAVAILABLE; a delay sleeps first."""
        rule = self.table().verdict(src, dst)
        if rule is None:
            return True
        if rule.action is Action.REFUSE:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"chaos: {rule.describe()}")
        if rule.action is Action.DELAY:
            await asyncio.sleep(rule.delay_ms / 1000)
            return True
        return False

    async def drop_call(self, src: str, dst: str, context: Any) -> None:
        """A dropped unary message: nothing arrives, so the caller waits out its deadline."""
        remaining = context.time_remaining()
        # Past the deadline, so the caller sees its own DEADLINE_EXCEEDED, as with a real loss.
        wait = DROP_WAIT_CAP_S if remaining is None else min(remaining + 1.0, DROP_WAIT_CAP_S)
        await asyncio.sleep(max(wait, 0.0))
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"chaos: drop {src} -> {dst}")


_FILTER: MessageFilter | None = None


def configure(name: str, rules_path: Path) -> MessageFilter:
    """Turn the filter on for this process (before any server or channel is made)."""
    global _FILTER
    _FILTER = MessageFilter(name, rules_path)
    log.warning("chaos on: message faults from %s", rules_path)
    return _FILTER


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    return [] if _FILTER is None else [_ServerFilter(_FILTER)]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    if _FILTER is None:
        return []
    name = _FILTER.name
    return [
        _StampUnaryUnary(name),
        _StampUnaryStream(name),
        _StampStreamUnary(name),
        _StampStreamStream(name),
    ]


# -- client side: say who calls ---------------------------------------------------------


class _Stamp:
    """Adds this process's name to a call's metadata."""

    def __init__(self, name: str) -> None:
        self.name = name

    def details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(CALLER_KEY, self.name)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _StampUnaryUnary(_Stamp, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.details(details), request)


class _StampUnaryStream(_Stamp, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self.details(details), request)


class _StampStreamUnary(_Stamp, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self.details(details), requests)


class _StampStreamStream(_Stamp, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self.details(details), requests)


# -- server side: apply the rules -------------------------------------------------------


def _caller(details: grpc.HandlerCallDetails) -> str | None:
    for key, value in details.invocation_metadata or ():
        if key == CALLER_KEY:
            return str(value)
    return None


class _ServerFilter(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, message_filter: MessageFilter) -> None:
        self.filter = message_filter

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        caller = _caller(details)
        if handler is None or caller is None or caller == self.filter.name:
            return handler
        return _wrap(handler, self.filter, caller)


class _Call:
    """The filter between one caller and this process, applied to a call's messages."""

    def __init__(self, mf: MessageFilter, caller: str) -> None:
        self.filter = mf
        self.me = mf.name
        self.caller = caller

    async def inbound(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            if await self.filter.pass_message(self.caller, self.me, context):
                yield request

    async def unary_in(self, context: Any) -> None:
        if not await self.filter.pass_message(self.caller, self.me, context):
            await self.filter.drop_call(self.caller, self.me, context)

    async def unary_out(self, context: Any) -> None:
        if not await self.filter.pass_message(self.me, self.caller, context):
            await self.filter.drop_call(self.me, self.caller, context)

    async def streamed(self, behavior: Any, first: Any, context: Any) -> AsyncIterator[Any]:
        """The responses of a stream handler, each passed through the filter, whether the
        handler yields them or writes them."""
        if inspect.isasyncgenfunction(behavior):
            async for response in behavior(first, context):
                if await self.filter.pass_message(self.me, self.caller, context):
                    yield response
        else:
            await behavior(first, _WritingContext(context, self.filter, self.me, self.caller))


def _wrap(handler: grpc.RpcMethodHandler, mf: MessageFilter, caller: str) -> grpc.RpcMethodHandler:
    call = _Call(mf, caller)
    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def uu(request: Any, context: Any) -> Any:
            await call.unary_in(context)
            response = await inner_uu(request, context)
            await call.unary_out(context)
            return response

        return grpc.unary_unary_rpc_method_handler(uu, **kw)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def us(request: Any, context: Any) -> AsyncIterator[Any]:
            await call.unary_in(context)
            async for response in call.streamed(inner_us, request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(us, **kw)
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def su(requests: Any, context: Any) -> Any:
            response = await inner_su(call.inbound(requests, context), context)
            await call.unary_out(context)
            return response

        return grpc.stream_unary_rpc_method_handler(su, **kw)
    inner_ss = handler.stream_stream

    async def ss(requests: Any, context: Any) -> AsyncIterator[Any]:
        async for response in call.streamed(inner_ss, call.inbound(requests, context), context):
            yield response

    return grpc.stream_stream_rpc_method_handler(ss, **kw)


class _WritingContext:
    """A handler's context whose `write` passes each response through the filter
    (for stream handlers that write instead of yielding)."""

    def __init__(self, context: Any, mf: MessageFilter, me: str, caller: str) -> None:
        self._context = context
        self._filter = mf
        self._me = me
        self._caller = caller

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def write(self, message: Any) -> None:
        if await self._filter.pass_message(self._me, self._caller, self._context):
            await self._context.write(message)
