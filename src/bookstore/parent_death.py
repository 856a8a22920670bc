"""A child process that dies with the process that started it (Linux:
PR_SET_PDEATHSIG): the kernel kills it when its parent ends."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> None:
    """Be killed when `parent` ends; exit now if it has ended already (the child is
    then no longer its child)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def die_with_parent() -> None:
    """A `preexec_fn` for a single-threaded parent (the launcher): runs in the child
    before exec. A parent with threads (the orchestrator's app, whose gRPC threads may
    hold a lock at fork) has its child call `die_with` after exec instead."""
    die_with(os.getppid())
