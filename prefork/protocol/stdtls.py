"""TLS with the standard library's ``ssl`` module, sans-I/O: an ``ssl.SSLObject`` on memory BIOs.

This is the ``ssl`` engine (docs/tls.md, "Two engines"): :class:`StdTLSSession` has the
interface of :class:`prefork.protocol.tls.TLSSession` (bytes in, bytes out), so the same asyncio
glue (``prefork.aio.tls.TLSProtocol``) drives either. The standard library's wrappers cost
about a third of pyOpenSSL's per call (docs/tls.md, "Performance").

:func:`configure` gives an ``ssl.SSLContext`` the settings of
:func:`prefork.protocol.tls.configure` (RFC 9325). One difference cannot be configured: the
``ssl`` module chooses the ALPN protocol in the **server's** order (RFC 7301 section 3.2's
"most highly preferred protocol that it supports"), so a client offering ``http/1.0`` before
``http/1.1`` gets ``http/1.1``; ``h2`` is preferred on both engines.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Sequence

from prefork.protocol.tlscommon import CIPHERS, MAX_PLAINTEXT, TLSError

__all__ = ["StdTLSSession", "configure"]


class StdTLSSession:
    """One server-side TLS connection on an ``ssl.SSLObject`` over memory BIOs.

    Attributes:
        connection: the ``ssl.SSLObject`` (what ``stream.checktls()`` returns).
        established: the handshake has completed.
        peer_closed: the peer sent close_notify; no more plaintext will come.
    """

    __slots__ = ("_incoming", "_outgoing", "_shut", "connection", "established", "peer_closed")

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.connection = ctx.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.established = False
        self.peer_closed = False
        self._shut = False

    @property
    def alpn(self) -> bytes | None:
        """The protocol ALPN chose (``b"http/1.1"``...), None if none was (or yet)."""
        chosen = self.connection.selected_alpn_protocol()
        return chosen.encode("ascii") if chosen else None

    def receive_data(self, data: bytes) -> None:
        """Feed ciphertext read from the peer (buffered in the BIO until :meth:`read`)."""
        self._incoming.write(data)

    def read(self) -> bytes:
        """Advance the handshake if it is not done, then return all plaintext decryptable now.

        Returns:
            The plaintext (``b""`` if none yet). After close_notify :attr:`peer_closed` is set.

        Raises:
            TLSError: the handshake failed or a record is bad; the connection cannot go on.
        """
        conn = self.connection
        if not self.established:
            try:
                conn.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            except ssl.SSLError as exc:
                raise TLSError(_describe(exc)) from None
            self.established = True
        incoming = self._incoming
        chunks = []
        try:
            # One record per call. The BIO's byte count tells when none is left, saving the
            # last call that would fail for want of data; a partial record still makes one.
            while incoming.pending or conn.pending():
                chunk = conn.read(MAX_PLAINTEXT)
                if not chunk:  # close_notify (RFC 8446 section 6.1)
                    self.peer_closed = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:  # close_notify after ours
            self.peer_closed = True
        except ssl.SSLError as exc:
            raise TLSError(_describe(exc)) from None
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data``; the records wait in :meth:`data_to_send`.

        Raises:
            TLSError: the session has failed or was shut down.
        """
        try:
            # A memory BIO never blocks, so SSL_write takes all of it in one call.
            self.connection.write(data)
        except ssl.SSLError as exc:
            raise TLSError(_describe(exc)) from None

    def data_to_send(self, hint: int = 0) -> bytes:
        """Everything OpenSSL wrote for the peer: handshake flights, records, alerts.

        Args:
            hint: ignored (the BIO knows its size); for the interface of ``TLSSession``.
        """
        return self._outgoing.read()

    def shutdown(self) -> None:
        """Queue close_notify (once; only after the handshake). Errors are moot at this point."""
        if self._shut or not self.established:
            return
        self._shut = True
        # SSL_shutdown sends close_notify, then wants the peer's: SSLWantReadError, ignored.
        with contextlib.suppress(ssl.SSLError):
            self.connection.unwrap()


def _describe(exc: ssl.SSLError) -> str:
    # "[SSL: UNEXPECTED_MESSAGE] unexpected message (_ssl.c:1006)": OpenSSL's reason, in words
    return str(exc)


def configure(ctx: ssl.SSLContext, protocols: Sequence[bytes]) -> ssl.SSLContext:
    """Apply prefork's server defaults to a context (before any connection uses it).

    The settings of :func:`prefork.protocol.tls.configure`: TLS 1.2 or later, no compression,
    no renegotiation, ECDHE with AEAD ciphers for TLS 1.2 (:data:`CIPHERS`), ALPN.

    Args:
        ctx: an ``ssl.SSLContext`` (``ssl.PROTOCOL_TLS_SERVER``).
        protocols: ALPN ids to accept, most preferred first, e.g. ``alpn_protocols(version)``;
            empty: no ALPN.

    Returns:
        ``ctx``.
    """
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(CIPHERS)
    if protocols:
        ctx.set_alpn_protocols([p.decode("ascii") for p in protocols])
    return ctx
