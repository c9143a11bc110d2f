"""The ``ssl`` engine on the event loop's own TLS transport (``loop.connect_accepted_socket(...,
ssl=ctx)``), where that transport is compiled code: uvloop's.

Why only there: asyncio's own TLS transport (``asyncio/sslproto.py``) is pure Python and, over
the same ``ssl.SSLObject``, costs more per request than prefork's :class:`~prefork.aio.tls.
TLSProtocol` (measured: docs/tls.md, "Performance"); uvloop's is Cython and costs less. So
:class:`LoopTLSFactory` is the protocol factory of a ``tls=True`` server on the ``ssl`` engine:
called, it makes prefork's protocol (the memory-BIO path); :meth:`LoopTLSFactory.open` uses the
loop's transport instead when :func:`compiled_transport` says the loop has one.

Only for ``tls=True``: a stage that reads plaintext first (the ``tls=None`` sniff) would have to
give its bytes back, and ``loop.start_tls`` takes none, so such connections stay on the
memory-BIO path (where the sniffed bytes are simply fed to the session).

While it shakes hands, a connection is a :class:`Handshake`: counted by the server
(``max_concurrent``, ``close()``), bounded by ``connection_setup_timeout`` (the transport's
``ssl_handshake_timeout``), and cancelled by ``close()``. A handshake that fails is the peer's
doing: the connection is closed with a debug log line, never reported (docs/architecture.md,
"Errors"). Once done, ALPN picks the protocol that serves the connection, as on the memory-BIO
path, and ``stream.checktls()`` returns the ``ssl.SSLObject``.

What the loop's transport does differently (docs/tls.md, "Two engines"): it cannot half-close
(``can_write_eof()`` is False: a lingering close becomes close_notify, then reading until the
peer's close_notify for at most :data:`SHUTDOWN_TIMEOUT`), and a client's close_notify or FIN
ends the connection at once (TLS 1.2 manners), without waiting for a response still owed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import ssl
from collections.abc import Callable
from typing import Any

from prefork.aio.host import ConnectionHost
from prefork.aio.tls import AppFactory, TLSProtocol

log = logging.getLogger("prefork.server")

#: Seconds the loop's transport waits for the peer's close_notify after sending its own,
#: reading (and dropping) what the peer still sends meanwhile: the lingering close of HTTP/1.
SHUTDOWN_TIMEOUT = 2.0
_FOREVER = 365 * 86400.0  # connection_setup_timeout = inf: the transport needs a number


def compiled_transport(loop: asyncio.AbstractEventLoop) -> bool:
    """Does ``loop`` have a TLS transport of its own that beats prefork's (uvloop)?

    Every ``asyncio.BaseEventLoop`` (the selector and proactor loops) shares asyncio's
    pure-Python one; a loop built otherwise has its own.
    """
    return not isinstance(loop, asyncio.BaseEventLoop)


class LoopTLSFactory:
    """The protocol factory of a ``tls=True`` server on the ``ssl`` engine.

    Args:
        host: the server.
        ctx: its ``ssl.SSLContext``.
        app: makes the protocol that serves a connection once ALPN has chosen.
        bio: makes prefork's own TLS protocol (the memory-BIO path).
    """

    def __init__(
        self,
        host: ConnectionHost,
        ctx: ssl.SSLContext,
        app: AppFactory,
        bio: Callable[[], TLSProtocol],
    ) -> None:
        self.host = host
        self.ctx = ctx
        self.app = app
        self._bio = bio

    def __call__(self) -> TLSProtocol:
        return self._bio()

    async def open(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """Serve ``sock``: on the loop's own TLS transport if it is compiled, else on ours."""
        if not compiled_transport(loop):
            await loop.connect_accepted_socket(self, sock)
            return
        host = self.host
        handshake = Handshake(host, self.app, asyncio.current_task())
        # Counted as a connection (close() can end it), no longer as a socket being opened.
        host.opening -= 1
        host.track(handshake)
        timeout = host.options.connection_setup_timeout
        try:
            await loop.connect_accepted_socket(
                lambda: handshake,
                sock,
                ssl=self.ctx,
                ssl_handshake_timeout=_FOREVER if math.isinf(timeout) else max(timeout, 1e-3),
                ssl_shutdown_timeout=SHUTDOWN_TIMEOUT,
            )
        except OSError as exc:  # ssl.SSLError, a reset, the set-up deadline: the peer's doing
            log.debug("TLS failed (handshake): %s", exc)
        except asyncio.CancelledError:
            if not handshake.cancelled:
                raise
            handshake.uncancel()  # our own close(): the server closed meanwhile
        finally:
            host.opening += 1  # the server's own count ends when this returns
            if not handshake.done:
                host.untrack(handshake)
        if not handshake.done:  # the loop's transport closed the socket
            host.connection_lost(handshake)


class Handshake(asyncio.Protocol):
    """A TLS handshake on the loop's transport: counted by the server until it is done."""

    def __init__(self, host: ConnectionHost, app: AppFactory, task: asyncio.Task[Any] | None):
        self.host = host
        self.done = False  # the handshake completed and the connection went on
        self.cancelled = False  # close() cancelled it
        self._app = app
        self._task = task

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The handshake is done: ALPN picks the protocol, which takes over the connection."""
        self.done = True
        sslobj = transport.get_extra_info("ssl_object")
        alpn = sslobj.selected_alpn_protocol()
        proto = self._app(sslobj, alpn.encode("ascii") if alpn else None)
        transport.set_protocol(proto)
        proto.connection_made(transport)  # the server counts it now...
        self.host.untrack(self)  # ...so this one can stop counting

    # The server calls these on the connections it tracks (close(), a server already closed).
    def close_gracefully(self) -> None:
        """Nothing is in progress that could finish: close at once."""
        self.close()

    def close(self) -> None:
        """Cancel the handshake (the loop's transport closes the socket)."""
        if not self.done and not self.cancelled and self._task is not None:
            self.cancelled = True
            self._task.cancel()

    def uncancel(self) -> None:
        """The cancellation is handled: the task goes on (and ends) as if not cancelled."""
        if self._task is not None:
            self._task.uncancel()
