"""The server's side of its connections: :class:`Host`, what ``aio/`` talks to.

A :class:`~prefork.server.Server` owns one ``Host``. It implements
:class:`~prefork.aio.host.ConnectionHost`: it counts connections (for ``max_concurrent``,
``close()`` and ``empty()``), runs ``onstream`` for each stream in a task, hands errors to
``onerror`` (keeping what the handler raises for ``step()``/``loop()``/``serve()``),
answers the ``health_path`` itself (prefork/health.py) and formats the ``Date`` field once per
second.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from prefork.aio.host import Connection
from prefork.errors import ProtocolError
from prefork.health import HealthPath
from prefork.options import ServerOptions
from prefork.protocol import forwarded, http1
from prefork.stream import Stream

log = logging.getLogger("prefork.server")

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: Ordinary disconnects and clients' protocol errors: not errors of the server.
ORDINARY = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ProtocolError)


def default_onerror(
    server: Any, context: Any, op: str, err: BaseException, errno: int | None
) -> None:
    """The default ``onerror`` handler: re-raise, so that ``step()``/``loop()`` report it."""
    raise err


class Host:
    """Connections, handler tasks and errors of one server.

    Args:
        server: passed as the first argument to ``onstream`` and ``onerror``.
        options: the server's options.
        bind_host: the host the server listens on, if known.
        get_loop: returns the server's event loop (made on first use).
        on_change: called when connections or tasks end (the server re-checks its accept
            gate and whether it is empty).

    Attributes:
        onerror: the error handler (``Server.onerror`` sets it).
        closed: the server is closing: new connections are asked to close gracefully.
        draining: the server drains (``Server.drain()``): the health path answers 503 and
            HTTP/1 responses end their connection.
        health: the ``health_path``, or None.
        connections: the tracked connections.
        opening: sockets added whose protocol is not made yet.
        requests: how many streams were started.
        on_socket_done: called once per socket finished with (a worker reports it).
        waiters: futures to resolve at :meth:`wake` (the server's ``loop()``/``serve()``).
    """

    def __init__(
        self,
        server: Any,
        options: ServerOptions,
        bind_host: str | None,
        get_loop: Callable[[], asyncio.AbstractEventLoop],
        on_change: Callable[[], None],
    ) -> None:
        self.server = server
        self.options = options
        self.limits = options.limits
        self.split = http1.splitter(options.http)
        self.bind_host = bind_host
        self.onerror: Callable[..., Any] = options.onerror or default_onerror
        self.closed = False
        self.draining = False
        self.health = None if options.health_path is None else HealthPath(options.health_path)
        self.connections: set[Connection] = set()
        self.opening = 0
        self.requests = 0
        self.on_socket_done: Callable[[], None] | None = None
        self.error: BaseException | None = None
        self._get_loop = get_loop
        self._on_change = on_change
        self._onstream = options.onstream
        self._tasks: set[asyncio.Task[Any]] = set()
        self.waiters: list[asyncio.Future[None]] = []
        self._date_at = 0
        self._date_str = ""
        peers = options.forwarded_allow_ips
        family = options.forwarded_headers
        # the fields that make a request worth resolving; None: forwarded headers are off
        self._forwarded_names = forwarded.NAMES.get(family) if peers.spec else None
        self._trusted: dict[Any, bool] = {}  # per connection: is its peer a trusted proxy?

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop."""
        return self._get_loop()

    # -- connections -------------------------------------------------------------------------

    def track(self, conn: Connection) -> None:
        """Count a connection being set up."""
        self.connections.add(conn)

    def connection_made(self, conn: Connection) -> None:
        """Count a connection serving HTTP; one given before ``close()`` still gets its grace."""
        self.connections.add(conn)
        if self.closed:
            conn.close_gracefully()

    def untrack(self, conn: Connection) -> None:
        """Stop counting ``conn`` (its socket went on to the next protocol)."""
        self.connections.discard(conn)
        self._trusted.pop(conn, None)
        self._on_change()

    def connection_lost(self, conn: Connection) -> None:
        """The connection's socket is finished with."""
        self.untrack(conn)
        self.socket_done()

    def socket_done(self) -> None:
        """One socket given to the server is finished with."""
        if self.on_socket_done is not None:
            self.on_socket_done()

    def date(self) -> str:
        """The ``Date`` field value, formatted once per second."""
        now = int(time.time())
        if now != self._date_at:
            self._date_at = now
            self._date_str = http_date(now)
        return self._date_str

    # -- tasks -------------------------------------------------------------------------------------

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in a task the host waits for (``no_work()`` is False meanwhile)."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._on_change()

    def add_stream(self, stream: Stream) -> None:
        """Run ``onstream(server, stream)`` in a new task, after applying what trusted
        proxies said of the request (:meth:`_forward`); the health path is answered here."""
        health = self.health
        if health is not None and health.matches(stream.request_headers.get(":path")):
            handler = self._answer_health  # not the application's: not counted
        else:
            self.requests += 1
            handler = self._onstream
            names = self._forwarded_names
            # Headers' own index (same package): a request without the fields costs a set test
            if names is not None and not names.isdisjoint(stream.request_headers._index):
                self._forward(stream)
        task = stream._task = stream.connection.loop.create_task(self._run_stream(stream, handler))
        self._tasks.add(task)

    async def _answer_health(self, server: Any, stream: Stream) -> None:
        health = self.health
        assert health is not None
        await health.answer(stream, self.draining or self.closed)  # a closing server: 503 too

    async def _run_stream(self, stream: Stream, handler: Callable[..., Any]) -> None:
        try:
            await handler(self.server, stream)
        except Exception as exc:
            # a request error the handler let through (a body too large to buffer: 413)
            stream._end(exc.status if isinstance(exc, ProtocolError) else 500)
            if not isinstance(exc, ORDINARY):
                self.report(stream, "onstream", exc)
        else:
            stream._end(503)
        finally:
            # not asyncio.current_task(): on Python 3.11 it costs a getpid() system call
            tasks = self._tasks
            tasks.discard(stream._task)
            if not tasks and not self.connections:  # else nothing to tell: the hot path
                self._on_change()

    def _forward(self, stream: Stream) -> None:
        """Apply the forwarded headers of ``stream``'s request if its connection's peer is a
        trusted proxy (docs/scale-out.md): ``stream.forwarded``, so ``peername()``, and the
        request's ``:scheme`` and ``:authority``. The verdict on a peer is kept per
        connection."""
        conn = stream.connection
        trusted = self._trusted.get(conn)
        if trusted is None:
            trusted = self._trusted[conn] = self._peer_trusted(conn.peername())
        if not trusted:
            return
        headers = stream.request_headers
        said, problems = forwarded.resolve(
            headers, self.options.forwarded_allow_ips, self.options.forwarded_headers
        )
        for problem in problems:
            peer = conn.peername()
            where = peer[1] if len(peer) == 3 else "a Unix socket"
            log.debug("forwarded header from %s ignored: %s", where, problem)
        if said is not None:
            stream.forwarded = forwarded.apply(headers, said)

    def _peer_trusted(self, peer: tuple) -> bool:
        """Whether a connection's peer (a ``peername()``) is in ``forwarded_allow_ips``: an
        address, or a Unix-socket peer (None to the list); an unknown peer never is."""
        if len(peer) == 3:
            return peer[1] in self.options.forwarded_allow_ips
        return (
            len(peer) == 2
            and peer[0] == socket.AF_UNIX
            and None in self.options.forwarded_allow_ips
        )

    def no_work(self) -> bool:
        """True when no connection, socket being set up or task exists."""
        return not (self.connections or self._tasks or self.opening)

    # -- errors and waiting ------------------------------------------------------------------------

    def report(self, context: Any, op: str, err: BaseException) -> None:
        """Give ``err`` to ``onerror``; what the handler raises is kept for ``take_error()``."""
        try:
            self.onerror(self.server, context, op, err, getattr(err, "errno", None))
        except BaseException as exc:  # the handler chose to fail: surface it from step/loop
            if self.error is None:
                self.error = exc
            else:
                log.error("further error while one is pending", exc_info=exc)
            self.wake()

    def take_error(self) -> None:
        """Raise the error ``onerror`` raised, if any (once)."""
        error, self.error = self.error, None
        if error is not None:
            raise error

    def wake(self) -> None:
        """Resolve the :attr:`waiters`."""
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)


def http_date(when: float) -> str:
    """``when`` (seconds since the epoch) as an IMF-fixdate, ``Sun, 06 Nov 1994 08:49:37 GMT``
    (RFC 9110 section 5.6.7): English names whatever the locale. ``email.utils.formatdate``
    says the same, but importing the email package costs each worker nearly 1 MiB."""
    t = time.gmtime(when)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
