"""An asyncio event loop that an external main loop can drive (lua-http's cqueues controller).

lua-http's ``pollfd``/``events``/``timeout``/``step`` let another main loop wait on the server.
asyncio has the pieces: a selector loop built on an explicit epoll selector has one pollable fd
(readable when any registered socket is), and ``loop.stop(); loop.run_forever()`` runs exactly
one iteration with public API. What asyncio does not expose is "how long until the next
callback is due" nor the selector: :func:`next_timeout` reads ``BaseEventLoop``'s ``_ready``
and ``_scheduled`` lists and :func:`pollfd` its ``_selector``: this module is the one place in
prefork that relies on CPython internals. For a loop without them the answers stay safe
(timeout 0: poll again soon; no pollfd).

:func:`new_loop` also makes the other kind of loop, uvloop's (the ``loop`` option, ``--loop``):
faster, but with no pollable fd and no view of its timers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import select
import selectors


def new_loop(kind: str = "asyncio") -> asyncio.AbstractEventLoop:
    """A new event loop of ``kind``: ``asyncio`` (a selector event loop whose selector fd is
    pollable: epoll on Linux), ``uvloop``, or ``auto`` (uvloop when it is installed).

    Raises:
        ImportError: ``uvloop`` is asked for and not installed.
    """
    if kind == "auto":
        kind = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.SelectorEventLoop(selectors.DefaultSelector())


def pollfd(loop: asyncio.AbstractEventLoop) -> int | None:
    """The fd that becomes readable when ``loop`` has I/O to process, or None if it has none."""
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return None
    try:
        fd = selector.fileno()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def next_timeout(loop: asyncio.AbstractEventLoop) -> float | None:
    """Seconds until ``loop`` must run again: 0 if callbacks are ready, None if nothing is due."""
    ready = getattr(loop, "_ready", None)
    scheduled = getattr(loop, "_scheduled", None)
    if ready is None or scheduled is None:
        return 0.0
    if ready:
        return 0.0
    if scheduled:
        return max(0.0, scheduled[0].when() - loop.time())
    return None


def run_once(loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
    """Wait up to ``timeout`` seconds (None: until something happens) then run one iteration.

    The wait is on :func:`pollfd` with ``select.poll``, bounded by the loop's own next deadline,
    so timers fire on time; the iteration itself never blocks.
    """
    due = next_timeout(loop)
    if timeout is not None:
        due = timeout if due is None else min(due, timeout)
    fd = pollfd(loop)
    if due != 0 and fd is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(None if due is None else max(0, int(due * 1000 + 0.999)))
    loop.stop()
    loop.run_forever()


def settle(future: asyncio.Future[None]) -> None:
    """Resolve ``future`` unless it is done (a timer that may fire after a wake-up)."""
    if not future.done():
        future.set_result(None)
