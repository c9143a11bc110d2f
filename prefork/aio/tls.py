"""TLS on asyncio: a protocol that owns the TCP transport and gives the HTTP layer plaintext.

:class:`TLSProtocol` runs the handshake of a TLS session under the connection's set-up
deadline, then makes the application protocol (HTTP/1 or HTTP/2, chosen by ALPN) and hands it
a :class:`TLSTransport`, which looks to it like the TCP transport: ``write`` encrypts,
``close`` sends close_notify, ``pause_reading`` stops the socket. Everything that can go wrong
with a peer (a bad ClientHello, a bad record, a handshake that never finishes, a reset) ends in
one place, the connection closing with a debug log line, and is not reported: a bad peer is
not an error of the server (docs/architecture.md, "Errors").

The session is either engine's (docs/tls.md, "Two engines"): a pyOpenSSL
:class:`~prefork.protocol.tls.TLSSession` or a standard-library
:class:`~prefork.protocol.stdtls.StdTLSSession`; both are bytes in, bytes out, and
``stream.checktls()`` returns the session's ``connection``. The loop's own TLS transport
(``loop.start_tls``, ``connect_accepted_socket(ssl=...)``) is not used, for either engine:
asyncio's is pure Python and costs more per request than this protocol; uvloop's costs the
same, cannot take back the bytes a sniff or a PROXY header stage read, and drops the alert of
a failed handshake (docs/tls.md, "Why not the loop's own TLS transport").

:class:`~prefork.aio.setupphase.SetupProtocol`, the part shared with the ``tls=None`` sniff,
is in its own module: this one imports pyOpenSSL, and ``prefork.aio.setup`` imports it only
when the first TLS connection arrives (docs/architecture.md, "Imports on first need").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from prefork.aio.host import ConnectionHost
from prefork.aio.setupphase import SetupProtocol
from prefork.protocol.tlscommon import Session, TLSError

log = logging.getLogger("prefork.server")

#: Makes the application protocol once the handshake is done, given the TLS connection object
#: (``OpenSSL.SSL.Connection`` or ``ssl.SSLObject``) and the protocol ALPN chose (or None).
AppFactory = Callable[[Any, bytes | None], asyncio.Protocol]


class TLSProtocol(SetupProtocol):
    """Server side of a TLS connection over the TCP transport (see the module docstring)."""

    def __init__(
        self,
        host: ConnectionHost,
        session: Session,
        app_factory: AppFactory,
        deadline: float | None = None,
    ) -> None:
        super().__init__(host, deadline)
        self.session = session
        self.app: asyncio.Protocol | None = None
        self._app_factory = app_factory
        self._app_transport: TLSTransport | None = None
        self._reading = True  # the application wants data
        self._eof = False  # the application was told of TCP EOF or close_notify
        self._closing = False  # close_notify sent or closed: incoming data is dropped
        self._closed = False  # close() or abort() called

    def __repr__(self) -> str:
        return f"<prefork.TLSProtocol established={self.session.established} app={self.app!r}>"

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # Decrypted and delivered even if the application paused reading meanwhile: pausing
        # stops the socket, it is advice, and the HTTP parser buffers what it is given.
        if self._closing:
            return  # after close_notify or close: the peer's leftovers are of no use
        self.session.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        # TCP FIN without close_notify: a truncation attack is possible in principle, but
        # HTTP/1 frames its own messages (RFC 9112 section 9.8), so it is an ordinary EOF.
        if self.app is None or self._closing:
            return False  # the transport closes
        return self._tell_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.app is None:
            self.setup_done(handed_over=False)
        else:
            self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # -- reading -------------------------------------------------------------------------------

    def _process(self) -> None:
        session = self.session
        try:
            plaintext = session.read()
        except TLSError as exc:
            self._fail(exc)
            return
        app = self.app
        if app is None:
            self._flush()  # the next handshake flight
            if not session.established:
                return
            app = self._start_app()
            if self._closing:
                return
        if plaintext:
            app.data_received(plaintext)
        if session.peer_closed and not self._closed and not self._tell_eof():
            self._close()  # close_notify, and the application has nothing more to send

    def _start_app(self) -> asyncio.Protocol:
        """The handshake is done: the application takes over (and the server's count)."""
        session = self.session
        app = self.app = self._app_factory(session.connection, session.alpn)
        self._app_transport = TLSTransport(self)
        app.connection_made(self._app_transport)
        self.setup_done(handed_over=True)
        return app

    def _tell_eof(self) -> bool:
        """Tell the application of EOF once; True: it keeps the connection open to write."""
        if self._eof or self.app is None:
            return True
        self._eof = True
        return bool(self.app.eof_received())

    def _fail(self, exc: TLSError) -> None:
        # Send the alert OpenSSL queued (it tells the peer why), then close; abort if the
        # peer is not reading, so an unread buffer cannot hold the socket open.
        log.debug("TLS failed (%s): %s", "after the handshake" if self.app else "handshake", exc)
        self._flush()
        self._closing = self._closed = True
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    def _pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self.transport.resume_reading()

    # -- writing (for TLSTransport) ------------------------------------------------------------

    def _flush(self, hint: int = 0) -> None:
        data = self.session.data_to_send(hint)
        if data:
            self.transport.write(data)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        try:
            self.session.send(data)
        except TLSError as exc:
            self._fail(exc)
            return
        self.transport.write(self.session.data_to_send(len(data)))

    def _write_eof(self) -> None:
        """close_notify, then TCP FIN; reading goes on until the peer closes (a lingering close)."""
        if self._closing:
            return
        self._closing = True
        self.session.shutdown()
        self._flush()
        self.transport.write_eof()

    def _close(self) -> None:
        """close_notify, flush, close: the peer learns the data was complete (RFC 8446 6.1)."""
        self._closed = True
        if not self._closing:
            self._closing = True
            self.session.shutdown()
            self._flush()
        self.transport.close()

    def _abort(self) -> None:
        self._closing = self._closed = True
        self.transport.abort()

    def close_gracefully(self) -> None:
        """During the handshake the server may drop us; afterwards the app is asked instead."""
        self._abort()

    def close(self) -> None:
        """Close at once (called by the server during the handshake)."""
        self._abort()


class TLSTransport(asyncio.Transport):
    """The transport the application protocol sees: plaintext in, plaintext out.

    It forwards to its :class:`TLSProtocol`; flow control and extra info are the TCP
    transport's (buffer sizes then count ciphertext, close enough for a high-water mark).
    """

    __slots__ = ("_tls",)

    def __init__(self, tls: TLSProtocol) -> None:
        super().__init__({"ssl_object": tls.session.connection})
        self._tls = tls

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls._write(data)

    def writelines(self, list_of_data: Any) -> None:
        # One send: fewer, fuller TLS records.
        self._tls._write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self._tls._write_eof()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self._tls._close()

    def abort(self) -> None:
        self._tls._abort()

    def is_closing(self) -> bool:
        return self._tls._closed or self._tls.transport.is_closing()

    def pause_reading(self) -> None:
        self._tls._pause_reading()

    def resume_reading(self) -> None:
        self._tls._resume_reading()

    def is_reading(self) -> bool:
        return self._tls._reading and not self.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._tls.session.connection
        return self._tls.transport.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tls.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._tls.transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._tls.transport.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._tls.app = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._tls.app  # type: ignore[return-value]
