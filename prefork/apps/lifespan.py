"""ASGI lifespan: the application's startup and shutdown, once per process that serves it.

The application runs once with a ``lifespan`` scope, in a task of its own, for as long as the
server lives: :meth:`Lifespan.startup` sends ``lifespan.startup`` and waits for the answer,
:meth:`Lifespan.shutdown` sends ``lifespan.shutdown`` and waits for that one. ``state`` is the
dict the application fills at startup (``scope["state"]``); every request's scope gets a
shallow copy of it (``prefork.asgi.onstream(app, state=lifespan.state)``).

A prefork worker starts its application before it tells the master it is ready, and shuts it
down after its last connection (docs/asgi.md, "Lifespan").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("prefork.asgi")

MODES = ("auto", "on", "off")


class LifespanFailure(Exception):
    """The application's startup or shutdown failed: it said so (``lifespan.*.failed``, whose
    message this carries), it raised (then the exception is the ``__cause__``), it ended without
    answering, or it took longer than the timeout."""


class Lifespan:
    """The ASGI lifespan protocol for one application.

    Args:
        app: the ASGI 3 application.
        mode: ``"on"``: the application must support lifespan; ``"auto"`` (uvicorn's default):
            one that raises (or returns) on the ``lifespan`` scope before answering startup
            is taken not to support it, logged at info, and served without it; ``"off"``:
            no lifespan events at all.

    Attributes:
        state: the dict given to the application as ``scope["state"]``; pass it to
            ``prefork.asgi.onstream(app, state=...)`` so that requests see a copy.
        supported: after :meth:`startup`, whether the application took part (False for
            ``"off"`` and for an application that does not support lifespan).

    Raises:
        ValueError: an unknown ``mode``.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"lifespan mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = False
        self._task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[dict[str, Any]] | None = None
        self._waiting: str | None = None  # the event whose answer is awaited
        self._answer: asyncio.Future[tuple[str, str]] | None = None
        self._failed = False  # the application answered lifespan.*.failed

    async def startup(self, timeout: float | None = None) -> None:
        """Run the application's startup: returns once it answers ``lifespan.startup.complete``.

        Args:
            timeout: seconds to wait for the answer (None: as long as it takes).

        Raises:
            LifespanFailure: ``lifespan.startup.failed`` (the message is the application's),
                an exception or an end without an answer in mode ``"on"``, or the timeout.
            RuntimeError: called twice.
        """
        if self._task is not None:
            raise RuntimeError("Lifespan.startup() runs once")
        if self.mode == "off":
            return
        self._inbox = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._main())
        self._task.add_done_callback(self._task_done)
        self.supported = True
        await self._event("startup", timeout)

    async def shutdown(self, timeout: float | None = None) -> None:
        """Run the application's shutdown: returns once it answers
        ``lifespan.shutdown.complete``; does nothing when lifespan did not start or is not
        supported, or when the application's lifespan already ended.

        Raises:
            LifespanFailure: ``lifespan.shutdown.failed``, an exception, an end without an
                answer, or the timeout.
        """
        task = self._task
        if task is None or not self.supported or task.done():
            return
        try:
            await self._event("shutdown", timeout)
        finally:
            if not task.done():  # it answered and lingers: nothing more will come for it
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """The application's lifespan ended. An exception while no answer is awaited (after
        startup, or after shutdown) is logged here: nobody else would see it. One after a
        ``failed`` answer is how frameworks say it (Starlette re-raises), already reported."""
        error = None if task.cancelled() else task.exception()
        if error is not None and self._waiting is None and not self._failed:
            log.error("the application's lifespan raised after startup", exc_info=error)

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        await self.app(scope, self._receive, self._send)

    async def _receive(self) -> dict[str, Any]:
        assert self._inbox is not None
        return await self._inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        event = self._waiting
        answer = self._answer
        if event is None or answer is None or not kind.startswith(f"lifespan.{event}."):
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
        outcome = kind[len(f"lifespan.{event}.") :]
        if outcome not in ("complete", "failed"):
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
        self._waiting = None
        self._failed = outcome == "failed"
        answer.set_result((outcome, str(message.get("message") or "")))

    async def _event(self, event: str, timeout: float | None) -> None:
        """Send ``lifespan.<event>`` and wait for the answer, or for the application to end."""
        task, inbox = self._task, self._inbox
        assert task is not None and inbox is not None
        answer = self._answer = asyncio.get_running_loop().create_future()
        self._waiting = event
        inbox.put_nowait({"type": f"lifespan.{event}"})
        done, _ = await asyncio.wait(
            (answer, task), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        self._waiting = None
        if answer.done():
            outcome, message = answer.result()
            if outcome == "failed":
                log.error("application %s failed: %s", event, message or "(no message)")
                raise LifespanFailure(
                    f"application {event} failed" + (f": {message}" if message else "")
                )
            log.info("application %s complete", event)
            return
        if not done:
            raise LifespanFailure(f"application {event} did not complete within {timeout} s")
        self._ended(event, task)

    def _ended(self, event: str, task: asyncio.Task[None]) -> None:
        """The application's lifespan ended (raised or returned) before answering ``event``."""
        error = None if task.cancelled() else task.exception()
        if event == "startup" and self.mode == "auto":
            self.supported = False
            log.info("ASGI 'lifespan' protocol appears unsupported")
            if error is not None:
                log.debug("the application raised on the lifespan scope", exc_info=error)
            return
        what = f"raised {error!r}" if error is not None else "ended without answering"
        raise LifespanFailure(f"application {event}: its lifespan {what}") from error
