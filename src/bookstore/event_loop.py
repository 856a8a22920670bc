"""How a service process (`bookstore serve`) runs its event loop: on uvloop, its start-up
heap frozen. (The launcher, `bookstore up`, keeps asyncio's own loop: it spends little
CPU on it.)

- uvloop (libuv under asyncio's API, from uvicorn[standard]) wakes, reads and writes
  with less Python per call than asyncio's own loop, on every hop of a checkout.
  `BOOKSTORE_UVLOOP=off` (or a platform without it) keeps asyncio's loop.
- `gc.freeze()` once the process has imported and built what it serves with: the
  modules, classes and settings that live as long as the process move out of the
  collector's generations, so a full collection no longer walks them again and again.
  `BOOKSTORE_GC_FREEZE=off` leaves the collector as Python sets it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's own) when off or not installed."""
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard] on Linux
        log.warning("uvloop is not installed: asyncio's own event loop runs")
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def freeze_heap() -> None:
    """Collect once, then keep everything alive now out of later collections."""
    gc.collect()
    gc.freeze()


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool, gc_freeze: bool) -> T:
    """`asyncio.run(main)` on the chosen loop; the heap frozen before it starts."""
    if gc_freeze:
        freeze_heap()
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        return runner.run(main)
