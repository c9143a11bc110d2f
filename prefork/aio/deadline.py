"""A connection's one deadline, on one lazily re-armed timer.

Each phase of a connection (set-up, waiting for a request, lingering) has a deadline; a
keep-alive connection moves it at every request. Moving it later only stores a number: the
timer, if it fires early, re-arms itself for the new time. So a busy keep-alive connection
costs one timer per timeout period, not a cancelled timer per request.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class Deadline:
    """Call ``expired()`` once the deadline set by :meth:`arm` has passed (unless cleared)."""

    __slots__ = ("_expired", "_loop", "_timer", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired
        self._timer: asyncio.TimerHandle | None = None
        self.when: float | None = None

    def arm(self, seconds: float) -> None:
        """Expire ``seconds`` from now (``math.inf``: never), replacing any earlier setting."""
        if math.isinf(seconds):
            self.when = None
            return
        when = self.when = self._loop.time() + seconds
        timer = self._timer
        if timer is not None and timer.when() > when:  # sooner than the timer: move it
            timer.cancel()
            timer = None
        if timer is None:
            self._timer = self._loop.call_at(when, self._fire)

    def clear(self) -> None:
        """No deadline for now (the timer may still fire, and then finds nothing to do)."""
        self.when = None

    def cancel(self) -> None:
        """No deadline, no timer: the connection is gone."""
        self.when = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        when = self.when
        if when is None:
            return
        if self._loop.time() < when:
            self._timer = self._loop.call_at(when, self._fire)
            return
        self.when = None
        self._expired()
