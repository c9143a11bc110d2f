"""lua-http's ``http.server`` on asyncio: accept connections and run ``onstream`` per request.

``new(**options)`` wraps an existing socket (or none: connections then come from
:meth:`Server.add_socket`, as in a prefork worker); ``listen(**options)`` makes the socket.
The options are validated at once (``prefork.options``); docs/server.md is the reference.

Error handling follows lua-http: errors go to the ``onerror`` handler, called as
``handler(server, context, op, err, errno)`` with ``op`` one of ``accept``, ``wrap``,
``get_next_incoming_stream`` and ``onstream``. The default handler re-raises, so the error
surfaces from :meth:`Server.step`, :meth:`Server.loop` or :meth:`Server.serve`. Ordinary
disconnects (EPIPE, ECONNRESET, timeouts) and clients' protocol errors (answered with 4xx) are
not errors of the server and are not reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as errnos
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from prefork import sockets
from prefork.aio import loop as aioloop
from prefork.aio import setup
from prefork.hosting import ORDINARY, Host, default_onerror
from prefork.options import ListenOptions, ServerOptions, parse_listen_options, parse_server_options
from prefork.stream import Stream

__all__ = ["Server", "default_onerror", "listen", "new"]

log = logging.getLogger("prefork.server")

ACCEPT_BATCH = 64
_RESOURCE_ERRNOS = {errnos.EMFILE, errnos.ENFILE, errnos.ENOBUFS, errnos.ENOMEM}
_MISSING: Any = object()


class Server:
    """An HTTP server: a listening socket (optional), its connections and their streams.

    Made by :func:`new` or :func:`listen`, not directly.

    Its connections talk to a :class:`~prefork.hosting.Host` it owns, through the
    interface of ``prefork.aio.host``; the methods here are the seed's API.
    """

    def __init__(self, options: ServerOptions, bind: ListenOptions | None = None) -> None:
        self._options = options
        self._bind = bind
        self._loop: asyncio.AbstractEventLoop | None = options.cq
        self._own_loop = False
        self._socket = options.socket
        self._unix_path: str | None = None
        self._listening = False
        self._accepting = False
        self._paused = False
        self._backoff = False
        self._closed = False
        self._finished = False
        host_name = bind.host if bind is not None else None
        self._host = Host(self, options, host_name, self._get_loop, self._on_change)
        self._connection_factory = setup.connection_factory(self._host)

    def __repr__(self) -> str:
        return (
            f"prefork.Server(socket={sockets.localname(self._socket)!r}, "
            f"connections={self.connections})"
        )

    @property
    def requests(self) -> int:
        """How many requests (streams) it has started, for statistics."""
        return self._host.requests

    @property
    def connections(self) -> int:
        """How many connections it holds now (being set up or serving), for statistics."""
        return len(self._host.connections)

    @property
    def on_socket_done(self) -> Callable[[], None] | None:
        """Called once for each socket given to :meth:`add_socket` when it is finished with
        (closed, failed or taken over); a prefork worker reports these to its master so that
        its count of open connections stays true."""
        return self._host.on_socket_done

    @on_socket_done.setter
    def on_socket_done(self, callback: Callable[[], None] | None) -> None:
        self._host.on_socket_done = callback

    # -- set-up --------------------------------------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = aioloop.new_loop()
            self._own_loop = True
        return self._loop

    def onerror(self, handler: Callable[..., Any] = _MISSING) -> Callable[..., Any]:
        """Without argument: the current error handler. With one: install it, return the old.

        Raises:
            TypeError: ``handler`` is not callable.
        """
        old = self._host.onerror
        if handler is not _MISSING:
            if not callable(handler):
                raise TypeError("onerror handler must be callable")
            self._host.onerror = handler
        return old

    def listen(self, timeout: float | None = None) -> None:
        """Bind (resolving the host name, within ``timeout``) and start listening.

        Called implicitly by ``step``/``loop``/``serve``; call it first to learn the port from
        :meth:`localname`. Does nothing on a closed server or when already listening.

        Raises:
            OSError: the address cannot be resolved or bound (``EADDRINUSE``...).
            TimeoutError: name resolution took longer than ``timeout``.
        """
        if self._closed or self._listening:
            return
        if self._socket is None and self._bind is not None:
            self._socket = sockets.bind_within(self._bind, self._options.backlog, timeout)
            if self._bind.path is not None:
                self._unix_path = os.fsdecode(self._bind.path)
        if self._socket is not None:
            if not sockets.is_listening(self._socket):
                self._socket.listen(self._options.backlog)
            self._socket.setblocking(False)
        self._listening = True
        self._update_accepting()

    def localname(self) -> tuple:
        """``(family, address, port)``, ``(AF_UNIX, path)``, or ``(AF_UNSPEC,)`` if not bound."""
        return sockets.localname(self._socket)

    # -- accepting -------------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop accepting: new clients wait in the kernel's backlog; live connections go on."""
        self._paused = True
        self._update_accepting()

    def resume(self) -> None:
        """Accept new clients again after :meth:`pause`."""
        self._paused = False
        self._update_accepting()

    def _update_accepting(self) -> None:
        want = (
            self._listening
            and self._socket is not None
            and not (self._paused or self._closed or self._backoff)
            and len(self._host.connections) + self._host.opening < self._options.max_concurrent
        )
        if want == self._accepting:
            return
        self._accepting = want
        loop = self._get_loop()
        if want:
            loop.add_reader(self._socket, self._on_acceptable)  # type: ignore[arg-type]
        else:
            loop.remove_reader(self._socket)  # type: ignore[arg-type]

    def _on_acceptable(self) -> None:
        listener = self._socket
        for _ in range(ACCEPT_BATCH):
            if not self._accepting or listener is None:
                return
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._accept_failed(exc)
                return
            self.add_socket(sock)

    def _accept_failed(self, exc: OSError) -> None:
        if exc.errno in (errnos.ECONNABORTED, errnos.EPROTO, errnos.EPERM):
            return  # the client gave up before we accepted it
        if exc.errno in _RESOURCE_ERRNOS:
            # Out of descriptors or memory: retrying at once would spin; back off briefly.
            log.warning("accept failed (%s); pausing accept for 0.5 s", exc)
            self._backoff = True
            self._update_accepting()
            self._get_loop().call_later(0.5, self._end_backoff)
            return
        self._host.report(self._socket, "accept", exc)

    def _end_backoff(self) -> None:
        self._backoff = False
        self._update_accepting()

    def add_socket(self, sock: socket.socket) -> bool:
        """Serve a connected socket from anywhere (the master, inetd, ``socketpair()``).

        Returns:
            True, or False when the server is closed (the socket is then closed).
        """
        if not isinstance(sock, socket.socket):
            raise TypeError(f"add_socket needs a socket.socket, got {type(sock).__name__}")
        if self._closed:
            sock.close()
            return False
        loop = self._get_loop()
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Always, not only when the socket "looks" TCP: a socket rebuilt from a passed fd
            # may not, and delayed ACKs then cost ~40 ms a request (docs/master.md).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._host.opening += 1
        self._host.spawn(self._open(sock, loop))
        return True

    async def _open(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        try:
            await loop.connect_accepted_socket(self._connection_factory, sock)
        except Exception as exc:  # OSError, or a protocol that failed to start (a bug: report)
            sock.close()
            self._host.socket_done()
            if not isinstance(exc, ORDINARY):
                self._host.report(sock, "wrap", exc)
        finally:
            self._host.opening -= 1

    def add_stream(self, stream: Stream) -> None:
        """Run ``onstream(server, stream)`` for ``stream`` in a new task."""
        self._host.add_stream(stream)

    def _on_change(self) -> None:
        # A connection or task ended: maybe accept again; wake loop()/serve() when empty.
        self._update_accepting()
        if self.empty():
            self._host.wake()

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening and close the socket; live exchanges finish, then their connections
        close (idle keep-alive connections at once). A closed server cannot be reused: later
        calls to its methods do nothing (``add_socket`` closes the socket it is given)."""
        if self._closed:
            return
        self._closed = self._host.closed = True
        self._update_accepting()
        if self._socket is not None:
            self._socket.close()
            if self._unix_path is not None:
                sockets.unlink_socket(self._unix_path)
        for conn in list(self._host.connections):
            conn.close_gracefully()
        self._on_change()
        self._finish()

    def empty(self) -> bool:
        """True when the listening socket (if any) and every connection have been closed."""
        return (self._closed or self._socket is None) and self._host.no_work()

    def _finish(self) -> None:
        # Close the loop we made once nothing can use it any more.
        if (
            self._closed
            and self._own_loop
            and not self._finished
            and self.empty()
            and self._loop is not None
            and not self._loop.is_running()
        ):
            self._finished = True
            self._loop.close()

    # -- driving the loop --------------------------------------------------------------------------

    def pollfd(self) -> int | None:
        """An fd that polls readable when the server has work (for external main loops)."""
        if self._finished:
            return None
        return aioloop.pollfd(self._get_loop())

    def events(self) -> str:
        """The poll events to wait for on :meth:`pollfd`: always ``"r"``."""
        return "r"

    def timeout(self) -> float | None:
        """Seconds until :meth:`step` must be called even without I/O; None: no deadline."""
        if self._finished:
            return None
        return aioloop.next_timeout(self._get_loop())

    def step(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds for work, then run one iteration of the loop.

        Raises:
            Exception: whatever the ``onerror`` handler raised.
        """
        if self._finished:
            return
        self.listen()
        aioloop.run_once(self._get_loop(), timeout)
        self._host.take_error()
        self._finish()

    def loop(self, timeout: float | None = None) -> None:
        """Run until the server is empty (closed, every connection done), an error, or
        ``timeout`` seconds. Pausing does not end the loop: a paused server is not empty.

        Raises:
            Exception: whatever the ``onerror`` handler raised.
        """
        if self._finished:
            return
        self.listen()
        loop = self._get_loop()
        if not self.empty():
            done = loop.create_future()
            self._host.waiters.append(done)
            timer = None if timeout is None else loop.call_later(timeout, _settle, done)
            try:
                loop.run_until_complete(done)
            finally:
                self._host.waiters.remove(done)
                if timer is not None:
                    timer.cancel()
        self._host.take_error()
        self._finish()

    def _adopt(self, running: asyncio.AbstractEventLoop) -> None:
        # listen()/pollfd() before serve() made a private loop; nothing ran on it yet, so the
        # listener moves to the running loop instead of failing.
        old = self._loop
        if not self._own_loop or old is None or old.is_running() or not self._host.no_work():
            raise RuntimeError("this server runs on another event loop (its cq)")
        if self._accepting:
            old.remove_reader(self._socket)  # type: ignore[arg-type]
            self._accepting = False
        old.close()
        self._loop, self._own_loop = running, False
        self._update_accepting()

    async def serve(self) -> None:
        """Serve on the running asyncio loop until :meth:`close` and the last connection ends.

        For programs that already run asyncio (the loop becomes this server's ``cq``).
        Cancelling ``serve()`` closes the server.

        Raises:
            RuntimeError: the server was made with a different ``cq``.
            Exception: whatever the ``onerror`` handler raised.
        """
        running = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = running
        elif self._loop is not running:
            self._adopt(running)
        self.listen()
        try:
            while not (self._closed and self.empty()) and self._host.error is None:
                waiter = running.create_future()
                self._host.waiters.append(waiter)
                try:
                    await waiter
                finally:
                    self._host.waiters.remove(waiter)
        except asyncio.CancelledError:
            self.close()
            raise
        self._host.take_error()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def new(**options: Any) -> Server:
    """Make a server for ``options.socket`` (or for sockets given to ``add_socket``).

    Raises:
        TypeError, ValueError: an unknown option, or one of the wrong type or value.
    """
    return Server(parse_server_options(options))


def listen(**options: Any) -> Server:
    """Make a server that listens on ``host``/``port`` or ``path`` (bound by ``listen()``).

    Raises:
        TypeError, ValueError: an unknown option, or one of the wrong type or value.
    """
    server_options = parse_server_options(options, listening=True)
    return Server(server_options, parse_listen_options(options))
