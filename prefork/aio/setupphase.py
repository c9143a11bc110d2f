"""A connection being set up: counted by the server, closed at its set-up deadline.

:class:`SetupProtocol` is what the ``tls=None`` sniff (``prefork.aio.setup.SniffingProtocol``)
and the TLS handshake (``prefork.aio.tls.TLSProtocol``) share: while a connection is being set
up it is counted by the server (``max_concurrent``, ``close()``), and one timer closes it at
the set-up deadline (``connection_setup_timeout``). It imports no TLS library, so a server
that sniffs plaintext connections loads pyOpenSSL only when a ClientHello arrives.
"""

from __future__ import annotations

import asyncio
import math

from prefork.aio.host import ConnectionHost

__all__ = ["SetupProtocol"]


class SetupProtocol(asyncio.Protocol):
    """A connection not yet serving HTTP: tracked by the server, closed at its deadline."""

    def __init__(self, host: ConnectionHost, deadline: float | None = None) -> None:
        self.host = host
        self.loop = host.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.deadline = deadline
        self._timer: asyncio.TimerHandle | None = None
        self._tracked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.deadline is None:
            timeout = self.host.options.connection_setup_timeout
            if not math.isinf(timeout):
                self.deadline = self.loop.time() + timeout
        if self.deadline is not None:
            self._timer = self.loop.call_at(self.deadline, self._expired)
        self._tracked = True
        # The host counts it (max_concurrent, close()) while it sets up; the protocol
        # serving HTTP takes its place once it starts.
        self.host.track(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.setup_done(handed_over=False)

    def setup_done(self, *, handed_over: bool) -> None:
        """Set-up is over: stop the timer and the count.

        Args:
            handed_over: the socket lives on in the next protocol (which the server now
                counts); otherwise it is closed, and the server learns that it is done.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tracked:
            self._tracked = False
            if handed_over:
                self.host.untrack(self)
            else:
                self.host.connection_lost(self)

    def hand_over(self, proto: asyncio.Protocol, first: bytes) -> None:
        """Give the socket and the bytes read past the set-up (if any) to the next protocol."""
        transport = self.transport
        transport.set_protocol(proto)
        proto.connection_made(transport)  # the server counts it now...
        self.setup_done(handed_over=True)  # ...so this one can stop counting
        if first and not transport.is_closing():  # the server may have closed meanwhile
            proto.data_received(first)

    def _expired(self) -> None:
        # A client that does not finish set-up in time is dropped without a word: there is
        # no protocol yet in which to say anything.
        self._timer = None
        self.transport.abort()

    # The server calls these on the connections it tracks (close(), a server already closed).
    def close_gracefully(self) -> None:
        """Nothing is in progress that could finish: close at once."""
        self.transport.abort()

    def close(self) -> None:
        """Close at once."""
        self.transport.abort()
