"""Connection set-up: which protocol object serves a newly added socket.

The seed's ``tls`` option decides (docs/tls.md; docs/architecture.md, departure f):

* False: plaintext (a ClientHello then gets the HTTP/1 parser's 400).
* True: TLS (:class:`~prefork.aio.tls.TLSProtocol`), then HTTP inside it.
* None: :class:`SniffingProtocol` keeps the first bytes until they tell a ClientHello from
  plaintext (:func:`~prefork.protocol.sniff.looks_like_tls`), then hands the socket and the kept
  bytes to one or the other. Sniffing and the handshake share one ``connection_setup_timeout``.

Then the HTTP version (docs/http2.md): ALPN ``h2`` means HTTP/2, another
ALPN result HTTP/1; without one, :class:`PrefaceSniffer`, an HTTP/1 connection, looks at the
first bytes and hands over to HTTP/2 if they are the 24-byte preface (prior knowledge, RFC
9113 section 3.3).
``version=2`` skips the sniff: everything is HTTP/2, and a bad preface gets GOAWAY.
``version`` 1.0 or 1.1 skips it too: everything is HTTP/1.

A socket whose connection starts with a PROXY protocol header (docs/scale-out.md) is served
first by :class:`~prefork.aio.proxy.ProxyHeaderProtocol`, which then hands it to the stages
above with the header and the rest of the set-up deadline; the HTTP connection keeps the
header as its ``proxy``.

The TLS context is the ``ctx`` option, or one generated once per server with a self-signed
certificate (made when the first TLS client arrives if ``tls`` is None, so a server that only
ever sees plaintext makes none and logs nothing). Its ALPN list offers ``h2`` unless
``version`` is 1.0 or 1.1. Its engine, pyOpenSSL or the standard library's ``ssl``, follows
the ``tls_engine`` option and the ``ctx`` given (``prefork.tlscontext.engine_of``); either
engine's session runs under the same :class:`~prefork.aio.tls.TLSProtocol`.

The libraries are imported on first need (docs/architecture.md): pyOpenSSL and cryptography
(``prefork.aio.tls``, ``prefork.protocol.tls``) with the first TLS connection, or at once with
``tls=True``; h2 (``prefork.aio.http2``) when ALPN or the preface asks for HTTP/2, or at once
with ``version=2``. The sniffs themselves are :mod:`prefork.protocol.sniff`'s, which loads
neither.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prefork import tlscontext
from prefork.aio.common import TAKEN
from prefork.aio.host import ConnectionHost
from prefork.aio.http1 import H1Connection
from prefork.aio.proxy import ProxyHeaderProtocol
from prefork.aio.setupphase import SetupProtocol
from prefork.protocol.proxy import ProxyHeader
from prefork.protocol.sniff import looks_like_tls, preface_match
from prefork.protocol.tlscommon import Session, alpn_protocols

if TYPE_CHECKING:
    from prefork.aio.tls import TLSProtocol

log = logging.getLogger("prefork.server")

#: Makes the TLS protocol for a connection, given the set-up deadline (None: start it now).
TLSFactory = Callable[[float | None], "TLSProtocol"]
#: A protocol factory for ``loop.connect_accepted_socket``.
Factory = Callable[[], asyncio.Protocol]


def connection_factories(server: ConnectionHost) -> tuple[Factory, Factory]:
    """The protocol factories for ``loop.connect_accepted_socket`` on a server's sockets: one
    for sockets that start with the client's bytes, one for sockets that start with a PROXY
    protocol header (which then passes the header to the same stages)."""
    mode = server.options.tls
    version = server.options.version
    plain: Callable[..., asyncio.Protocol]  # takes the PROXY header as ``proxy``
    if version == 2:
        from prefork.aio.http2 import H2Connection

        plain = functools.partial(H2Connection, server, fresh=True)
    elif version is None:
        plain = functools.partial(PrefaceSniffer, server)
    else:
        plain = functools.partial(H1Connection, server)
    contexts = _Contexts(server)
    if mode:
        contexts.get()  # TLS only: make (and warn about) a generated context at start-up

    def app(
        connection: Any, alpn: bytes | None, proxy: ProxyHeader | None = None
    ) -> asyncio.Protocol:
        if alpn == b"h2" or version == 2:
            from prefork.aio.http2 import H2Connection

            return H2Connection(server, tls=connection, proxy=proxy)
        if alpn or version is not None:
            return H1Connection(server, tls=connection, proxy=proxy)
        # No ALPN: prior knowledge is possible (RFC 9113 section 3.3).
        return PrefaceSniffer(server, connection, proxy)

    def https(deadline: float | None, proxy: ProxyHeader | None = None) -> TLSProtocol:
        from prefork.aio.tls import TLSProtocol

        factory = app if proxy is None else functools.partial(app, proxy=proxy)
        return TLSProtocol(server, contexts.session(), factory, deadline)

    def after_header(proxy: ProxyHeader | None, deadline: float | None) -> asyncio.Protocol:
        if mode is False:
            return plain(proxy=proxy)
        if mode:
            return https(deadline, proxy)
        https_proxied = functools.partial(https, proxy=proxy)
        return SniffingProtocol(
            server, https_proxied, functools.partial(plain, proxy=proxy), deadline
        )

    def proxied() -> asyncio.Protocol:
        return ProxyHeaderProtocol(server, after_header)

    if mode is False:
        return plain, proxied
    if mode:
        return (lambda: https(None)), proxied
    return (lambda: SniffingProtocol(server, https, plain)), proxied


class _Contexts:
    """The server's TLS context: the ``ctx`` option, else one generated on first use."""

    def __init__(self, server: ConnectionHost) -> None:
        options = server.options
        self._server = server
        self._ctx: Any = options.ctx
        self.engine = tlscontext.engine_of(options.tls_engine, options.ctx)

    def session(self) -> Session:
        """A new server-side session for prefork's own TLS protocol."""
        return tlscontext.new_session(self.engine, self.get())

    def get(self) -> Any:
        ctx = self._ctx
        if ctx is None:
            server = self._server
            host = server.bind_host
            version = server.options.version
            alpn = alpn_protocols(version, h2=version in (None, 2))
            ctx = self._ctx = tlscontext.generated(self.engine, host, alpn)
            log.warning(
                "TLS with a generated self-signed certificate for %s: clients will not trust "
                "it; pass ctx= with a real certificate (see docs/tls.md)",
                host or "localhost",
            )
        return ctx


class SniffingProtocol(SetupProtocol):
    """``tls=None``: read until the first bytes say TLS or plaintext, then hand over."""

    def __init__(
        self,
        server: ConnectionHost,
        https: TLSFactory,
        plain: Callable[[], asyncio.Protocol],
        deadline: float | None = None,
    ) -> None:
        super().__init__(server, deadline)
        self._https = https
        self._plain = plain
        self._first = b""

    def data_received(self, data: bytes) -> None:
        first = self._first = self._first + data
        verdict = looks_like_tls(first)
        if verdict is None:
            return  # at most five bytes in: a ClientHello arrives whole in practice
        proto: asyncio.Protocol
        proto = self._https(self.deadline) if verdict else self._plain()
        self.hand_over(proto, first)

    def eof_received(self) -> bool:
        return False  # nothing said yet, nothing owed: close


class PrefaceSniffer(H1Connection):
    """HTTP/1, unless the first bytes are the HTTP/2 preface (prior knowledge, ``version`` None).

    An ``H1Connection`` that looks at its first bytes: the HTTP/1 path costs one prefix test
    and no extra protocol object. A request line starting with ``P`` (``POST``, ``PUT``)
    differs from ``PRI *`` within a few bytes; anything else is decided by its first byte.
    """

    def __init__(
        self, server: ConnectionHost, tls: Any = None, proxy: ProxyHeader | None = None
    ) -> None:
        super().__init__(server, tls, proxy)
        self._first: bytes | None = b""

    def data_received(self, data: bytes) -> None:
        first = self._first
        if first is not None:
            first += data
            verdict = preface_match(first)
            if verdict is None:
                self._first = first  # a prefix of the preface: at most 23 bytes kept
                return
            self._first = None
            if verdict:
                self._switch(first)
                return
            data = first
        super().data_received(data)

    def _switch(self, first: bytes) -> None:
        from prefork.aio.http2 import H2Connection

        self._state = TAKEN  # this HTTP/1 side stands down (its timer too)
        transport = self.transport
        proto = H2Connection(self.host, self.tls, proxy=self.proxy)
        transport.set_protocol(proto)
        proto.connection_made(transport)  # the server counts it now...
        self.host.untrack(self)  # ...so this one can stop counting
        if not transport.is_closing():
            proto.data_received(first)
