"""Connection set-up: which protocol object serves a newly added socket.

The seed's ``tls`` option decides (DESIGN.md section 2, "Connection set-up"):

* False: plaintext HTTP/1 at once (a ClientHello then gets the HTTP/1 parser's 400).
* True: TLS (:class:`~prefork.aio.tls.TLSProtocol`), then HTTP/1 inside it.
* None: :class:`SniffingProtocol` keeps the first bytes until they tell a ClientHello from
  plaintext (:func:`~prefork.protocol.tls.looks_like_tls`), then hands the socket and the kept
  bytes to one or the other. Sniffing and the handshake share one ``connection_setup_timeout``.

The TLS context is the ``ctx`` option, or one generated once per server with a self-signed
certificate (made when the first TLS client arrives if ``tls`` is None, so a server that only
ever sees plaintext makes none and logs nothing). HTTP/2 will plug in by ALPN in ``app``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from OpenSSL import SSL

from prefork.aio.http1 import H1Connection
from prefork.aio.tls import SetupProtocol, TLSProtocol
from prefork.protocol import tls

if TYPE_CHECKING:
    from prefork.server import Server

log = logging.getLogger("prefork.server")

#: Makes the TLS protocol for a connection, given the set-up deadline (None: start it now).
TLSFactory = Callable[[float | None], TLSProtocol]


def connection_factory(server: Server) -> Callable[[], asyncio.Protocol]:
    """The protocol factory for ``loop.connect_accepted_socket`` on ``server``'s sockets."""
    mode = server._options.tls
    if mode is False:
        return lambda: H1Connection(server)
    contexts = _Contexts(server)
    if mode:
        contexts.get()  # TLS only: make (and warn about) a generated context at start-up

    def app(connection: SSL.Connection) -> asyncio.Protocol:
        # ALPN chose http/1.1, http/1.0 or nothing (alpn_protocols offers no h2 yet): HTTP/1.
        return H1Connection(server, tls=connection)

    def https(deadline: float | None) -> TLSProtocol:
        return TLSProtocol(server, contexts.get(), app, deadline)

    if mode:
        return lambda: https(None)
    return lambda: SniffingProtocol(server, https)


class _Contexts:
    """The server's TLS context: the ``ctx`` option, else one generated on first use."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._ctx: SSL.Context | None = server._options.ctx

    def get(self) -> SSL.Context:
        ctx = self._ctx
        if ctx is None:
            server = self._server
            host = server._bind.host if server._bind is not None else None
            ctx = self._ctx = tls.default_context(host, tls.alpn_protocols(server._options.version))
            log.warning(
                "TLS with a generated self-signed certificate for %s: clients will not trust "
                "it; pass ctx= with a real certificate (see docs/tls.md)",
                host or "localhost",
            )
        return ctx


class SniffingProtocol(SetupProtocol):
    """``tls=None``: read until the first bytes say TLS or plaintext, then hand over."""

    def __init__(self, server: Server, https: TLSFactory) -> None:
        super().__init__(server)
        self._https = https
        self._first = b""

    def data_received(self, data: bytes) -> None:
        first = self._first = self._first + data
        verdict = tls.looks_like_tls(first)
        if verdict is None:
            return  # at most five bytes in: a ClientHello arrives whole in practice
        proto: asyncio.Protocol
        proto = self._https(self.deadline) if verdict else H1Connection(self.server)
        transport = self.transport
        transport.set_protocol(proto)
        proto.connection_made(transport)  # the server counts it now...
        self._setup_done(handed_over=True)  # ...so this one can stop counting
        if not transport.is_closing():  # the server may have closed in the meantime
            proto.data_received(first)

    def eof_received(self) -> bool:
        return False  # nothing said yet, nothing owed: close
