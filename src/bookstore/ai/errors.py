"""The one place where AI-provider failures become our own error kinds.

google-genai raises its own `APIError` for HTTP statuses, the HTTP client
underneath (httpx2, httpx or aiohttp) raises transport errors, and our own
deadline raises `TimeoutError`. `translate` maps all of them to an `AiError`
whose `kind` is short enough to show as "fallback: <kind>". Everything else
in the package handles only `AiError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from google.genai import errors as genai_errors

# HTTP statuses worth one immediate retry: the server failed, not the request.
_RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


class AiError(Exception):
    """The AI did not give a usable answer; `kind` says why in a few words."""

    kind = "error"
    retryable = False
    # Whether the failure counts against the circuit breaker (the AI misbehaved).
    counts_as_failure = True

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.kind}: {detail}" if detail else self.kind)
        self.detail = detail


class AiConnectionError(AiError):
    """The AI endpoint could not be reached, or dropped the connection."""

    kind = "connection"
    retryable = True


class AiHttpError(AiError):
    """The AI endpoint answered with an HTTP error status."""

    def __init__(self, status: int, detail: str = "") -> None:
        self.kind = f"http {status}"
        self.status = status
        self.retryable = status in _RETRYABLE_STATUSES
        super().__init__(detail)


class AiTimeout(AiError):
    """No answer within the call's deadline."""

    kind = "timeout"


class AiNotJson(AiError):
    """The answer was not a JSON document (prose, fenced JSON, empty)."""

    kind = "not json"


class AiSchemaMismatch(AiError):
    """The answer was JSON but did not match the response schema."""

    kind = "schema mismatch"


class AiUnknownIds(AiError):
    """The answer named none of the books it was allowed to name."""

    kind = "unknown ids"
    counts_as_failure = False


class AiCircuitOpen(AiError):
    """The circuit breaker is open: the AI was not asked."""

    kind = "circuit open"
    counts_as_failure = False


class AiBudgetSpent(AiError):
    """The order's AI budget is spent: the AI was not asked."""

    kind = "budget spent"
    counts_as_failure = False


def _is_transport_error(exc: BaseException) -> bool:
    """A connection-level failure of whichever HTTP client the SDK uses.

    httpx, httpx2 and aiohttp are matched by their class names, so the mapping
    holds whichever of them the SDK picked (they are optional to it).
    """
    if isinstance(exc, ConnectionError | OSError):
        return True
    for cls in type(exc).__mro__:
        module = cls.__module__.split(".", 1)[0]
        if module in ("httpx", "httpx2", "httpcore", "httpcore2") and cls.__name__ in (
            "TransportError",
            "NetworkError",
            "ProtocolError",
        ):
            return True
        if module == "aiohttp" and cls.__name__ == "ClientError":
            return True
    return False


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return True
    return any(
        cls.__name__ in ("TimeoutException", "ServerTimeoutError")
        and cls.__module__.split(".", 1)[0] in ("httpx", "httpx2", "aiohttp")
        for cls in type(exc).__mro__
    )


def translate(exc: BaseException) -> AiError:
    """Our `AiError` for any exception an AI call raised."""
    if isinstance(exc, AiError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        return AiHttpError(int(exc.code or 0), str(exc.status or ""))
    if _is_timeout(exc):
        return AiTimeout()
    if _is_transport_error(exc):
        return AiConnectionError(type(exc).__name__)
    if isinstance(exc, ValueError):
        # The SDK raises ValueError for answers it cannot read as a response.
        return AiNotJson(type(exc).__name__)
    return AiError(type(exc).__name__)


@contextmanager
def translated() -> Iterator[None]:
    """`with translated(): ...` re-raises any failure as an `AiError`."""
    try:
        yield
    except AiError:
        raise
    except Exception as exc:
        raise translate(exc) from exc
