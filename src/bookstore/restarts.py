"""Whether `bookstore up` starts an exited service again, or gives up on the whole run.

A service that has come up once and then died is started again with back-off, like
Compose's `restart: unless-stopped`: whatever killed it may pass. A service that has
never come up is another matter: when it stops on a configuration error (exit code
`EXIT_CONFIG`), or with the same error several times in a row, starting it again only
repeats the failure, and the launcher says so at once instead of after its readiness
timeout.

A service has come up once the readiness probe reported it ready, or once one of its
runs lasted `up_after_s` (the probe runs only while `bookstore up` starts; this also
covers a launcher used without it).

The decision is pure: the launcher hands `RestartPolicy.exited` what it saw of each run
(exit code, how long it ran, its last lines of output) and gets `None` (start it
again) or a `GiveUp`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bookstore.settings import EXIT_CONFIG

UP_AFTER_S = 10.0  # a run this long counts as having come up, ready or not
SAME_ERROR_REPEATS = 3  # a never-up service failing alike this often in a row is given up

# The clock stamp `bookstore.logs` puts first on every log line ("12:04:05.123 "):
# two failures that differ only in it are the same error.
_CLOCK = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3} ")


@dataclass(frozen=True)
class Exit:
    """What the launcher saw of one run of a service."""

    code: int  # the exit code; negative: killed by that signal
    ran_s: float  # how long the run lasted
    tail: tuple[str, ...]  # its last lines of output, oldest first


@dataclass(frozen=True)
class GiveUp:
    """Why a service is not started again, and its last lines of output."""

    reason: str
    tail: tuple[str, ...]


def describe_code(code: int) -> str:
    """ "code 3" or "signal 9" (a negative exit code is the signal that ended it)."""
    return f"signal {-code}" if code < 0 else f"code {code}"


def _signature(exit: Exit) -> tuple[int, str]:
    """What two exits must share to be "the same error": the exit code and the last
    line of output (a traceback's exception, a configuration error's message)."""
    last = next((line.strip() for line in reversed(exit.tail) if line.strip()), "")
    return exit.code, _CLOCK.sub("", last)


class RestartPolicy:
    """One service's history of exits, and the decision after each."""

    def __init__(
        self, *, up_after_s: float = UP_AFTER_S, same_error_repeats: int = SAME_ERROR_REPEATS
    ) -> None:
        if same_error_repeats < 1:
            raise ValueError(f"same_error_repeats must be at least 1, got {same_error_repeats}")
        self.up_after_s = up_after_s
        self.same_error_repeats = same_error_repeats
        self._came_up = False
        self._streak: list[tuple[int, str]] = []  # signatures of the failures in a row

    @property
    def came_up(self) -> bool:
        """Whether the service has been up once (ready, or a run of `up_after_s`)."""
        return self._came_up

    def ready(self) -> None:
        """The readiness probe reported the service ready."""
        self._came_up = True
        self._streak.clear()

    def exited(self, exit: Exit) -> GiveUp | None:
        """After a run ended: None to start the service again, or why not."""
        if exit.ran_s >= self.up_after_s:
            self.ready()
        if self._came_up:
            return None
        if exit.code == EXIT_CONFIG:
            return GiveUp(
                f"stopped at start-up on a configuration error ({describe_code(exit.code)})",
                exit.tail,
            )
        signature = _signature(exit)
        if self._streak and self._streak[-1] != signature:
            self._streak.clear()
        self._streak.append(signature)
        if len(self._streak) >= self.same_error_repeats:
            return GiveUp(
                f"failed at start-up {len(self._streak)} times in a row with the same error"
                f" ({describe_code(exit.code)})",
                exit.tail,
            )
        return None
