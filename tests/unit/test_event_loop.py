"""A process's event loop: uvloop unless turned off, and the heap frozen when asked."""

from __future__ import annotations

import asyncio
import gc

import uvloop

from bookstore import event_loop


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_the_loop_is_uvloop_unless_turned_off() -> None:
    on = event_loop.run(_loop_type(), use_uvloop=True, gc_freeze=False)
    off = event_loop.run(_loop_type(), use_uvloop=False, gc_freeze=False)
    assert issubclass(on, uvloop.Loop)
    assert not issubclass(off, uvloop.Loop)


def test_the_start_up_heap_is_frozen_when_asked() -> None:
    try:
        event_loop.run(_loop_type(), use_uvloop=False, gc_freeze=True)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
