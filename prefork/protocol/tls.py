"""TLS with pyOpenSSL, sans-I/O: a connection on memory BIOs, and the server context.

This is the ``pyopenssl`` engine (docs/tls.md, "Two engines"); :mod:`prefork.protocol.stdtls`
is the same for the standard library's ``ssl``. What both share (:class:`TLSError`,
:data:`CIPHERS`, :func:`alpn_protocols`, :func:`self_signed`) is defined in
:mod:`prefork.protocol.tlscommon` and :mod:`prefork.protocol.selfsigned` and re-exported here.

:class:`TLSSession` is bytes in, bytes out, like h11: the caller feeds the ciphertext it read
(:meth:`~TLSSession.receive_data`), takes plaintext from :meth:`~TLSSession.read` (which drives
the handshake first), encrypts with :meth:`~TLSSession.send`, and writes what
:meth:`~TLSSession.data_to_send` returns. OpenSSL never touches a socket, so nothing here can
block an event loop.

The context helpers hold the defaults (RFC 9325, "Recommendations for Secure Use of TLS"):
TLS 1.2 minimum, no compression (CRIME), no renegotiation (a cheap CPU attack), AEAD ciphers
with forward secrecy, and an ALPN callback that picks the application protocol (RFC 7301).
:func:`default_context` makes the self-signed context the seed promises when ``ctx`` is None.

:func:`looks_like_tls`, the pure decision behind ``tls=None`` (is this a ClientHello?), is
:mod:`prefork.protocol.sniff`'s, re-exported here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from OpenSSL import SSL

from prefork.protocol.selfsigned import DEFAULT_VALIDITY, self_signed
from prefork.protocol.sniff import looks_like_tls
from prefork.protocol.tlscommon import CIPHERS, MAX_PLAINTEXT, TLSError, alpn_protocols

__all__ = [
    "CIPHERS",
    "DEFAULT_VALIDITY",
    "TLSError",
    "TLSSession",
    "alpn_protocols",
    "alpn_selector",
    "configure",
    "default_context",
    "looks_like_tls",
    "self_signed",
]

# Ciphertext per record beyond its plaintext: header, IV/nonce, tag or MAC, CBC padding.
_RECORD_OVERHEAD = 512
_HEADER = 5  # a record's header: type, legacy version, length (RFC 8446 section 5.1)
_MAX_RECORD = MAX_PLAINTEXT + 2048  # the longest a record may claim (RFC 5246 section 6.2.3)


class TLSSession:
    """One server-side TLS connection driven by memory BIOs.

    Attributes:
        connection: the ``OpenSSL.SSL.Connection`` (what ``stream.checktls()`` returns).
        established: the handshake has completed.
        peer_closed: the peer sent close_notify; no more plaintext will come.
    """

    __slots__ = ("_head", "_left", "_records", "_shut", "connection", "established", "peer_closed")

    def __init__(self, ctx: SSL.Context) -> None:
        self.connection = SSL.Connection(ctx, None)  # None: memory BIOs, no socket
        self.connection.set_accept_state()
        self.established = False
        self.peer_closed = False
        self._shut = False
        # The records fed and not read yet (see _count): read() makes one SSL_read per record,
        # and no last call that fails for want of data (about a third of a read's cost).
        self._records = 0
        self._left = 0  # bytes still to come of the record being received
        self._head = b""  # the first bytes of a record header split between two reads

    @property
    def alpn(self) -> bytes | None:
        """The protocol ALPN chose (``b"http/1.1"``...), None if none was (or yet)."""
        return self.connection.get_alpn_proto_negotiated() or None

    def receive_data(self, data: bytes) -> None:
        """Feed ciphertext read from the peer (buffered in OpenSSL until :meth:`read`)."""
        self.connection.bio_write(data)
        self._count(data)

    def _count(self, data: bytes) -> None:
        """Count the records ``data`` completes, from their headers (RFC 8446 section 5.1).

        Only lengths are read here; OpenSSL checks everything else. A header whose length
        is over the limit counts as a record at once, so OpenSSL rejects it at once.
        """
        size, left = len(data), self._left
        if left > size:
            self._left = left - size
            return
        pos, done = left, 1 if left else 0
        if self._head:  # the start of a header came with the last read (left is 0 then)
            data = self._head + data
            size = len(data)
        while pos + _HEADER <= size:
            length = data[pos + 3] << 8 | data[pos + 4]
            if length > _MAX_RECORD:
                pos, done = size, done + 1
                break
            end = pos + _HEADER + length
            if end > size:
                self._left, self._head = end - size, b""
                self._records += done
                return
            pos = end
            done += 1
        self._left = 0
        self._head = data[pos:]
        self._records += done

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
            except SSL.WantReadError:
                return b""
            except SSL.Error as exc:
                raise TLSError(_describe(exc)) from None
            self.established = True
            self._records = -1  # the handshake took records we did not count: read them all
        records, self._records = self._records, 0
        if records == 0:
            return b""
        chunks = []
        recv = conn.recv
        try:
            # Each call takes at least one whole record (the buffer holds the largest): after
            # as many calls as records, none is left. Records without application data (an
            # alert, a key update) make a call take several, or end it with WantReadError.
            while records:
                chunks.append(recv(MAX_PLAINTEXT))
                records -= 1
        except SSL.WantReadError:
            pass
        except SSL.ZeroReturnError:  # close_notify (RFC 8446 section 6.1)
            self.peer_closed = True
        except SSL.Error as exc:
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
            self.connection.sendall(data)
        except SSL.Error as exc:
            raise TLSError(_describe(exc)) from None

    def data_to_send(self, hint: int = 0) -> bytes:
        """Everything OpenSSL wrote for the peer: handshake flights, records, alerts.

        Args:
            hint: plaintext bytes just sent; sizes the read so that one call usually drains
                the BIO (a short read proves it empty, saving the call that fails).
        """
        size = hint + (hint // MAX_PLAINTEXT + 1) * _RECORD_OVERHEAD + 4096
        bio_read = self.connection.bio_read
        chunks = []
        while True:
            try:
                chunk = bio_read(size)
            except SSL.WantReadError:
                break
            chunks.append(chunk)
            if len(chunk) < size:
                break
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def shutdown(self) -> None:
        """Queue close_notify (once; only after the handshake). Errors are moot at this point."""
        if self._shut or not self.established:
            return
        self._shut = True
        with contextlib.suppress(SSL.Error):
            self.connection.shutdown()


def _describe(exc: SSL.Error) -> str:
    # pyOpenSSL puts OpenSSL's error queue in args[0]: a list of (library, function, reason).
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, list) and detail and isinstance(detail[-1], tuple):
        return "; ".join(str(entry[-1]) for entry in detail)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# -- contexts ------------------------------------------------------------------------------------


def alpn_selector(protocols: Iterable[bytes]) -> Callable[[SSL.Connection, list[bytes]], Any]:
    """An ALPN select callback: ``h2`` if both sides allow it, else the client's first choice.

    Among HTTP/1 versions the client's order wins, as in lua-http (the client knows what it
    prefers). ``h2`` goes first whatever its place in the client's list: httpx (httpcore)
    offers ``http/1.1`` before ``h2``, and one HTTP/2 connection serves a client better than
    several HTTP/1 ones, which is why servers commonly prefer it. A client offering nothing
    we know gets no ALPN answer (RFC 7301 section 3.2 would allow a fatal alert; serving it
    HTTP/1 is kinder, and lua-http's matrix expects ALPN "foo" to work). ``h2`` in
    ``protocols`` is safe: :func:`configure` never allows TLS below 1.2, which RFC 9113
    section 9.2 requires.
    """
    allowed = frozenset(protocols)
    h2 = b"h2" in allowed

    def select(connection: SSL.Connection, offered: list[bytes]) -> Any:
        if h2 and b"h2" in offered:
            return b"h2"
        for proto in offered:
            if proto in allowed:
                return proto
        return SSL.NO_OVERLAPPING_PROTOCOLS

    return select


def configure(ctx: SSL.Context, protocols: Sequence[bytes]) -> SSL.Context:
    """Apply prefork's server defaults to a fresh context (before any connection uses it).

    Call it on a context of your own to get the same defaults and ALPN; prefork does not alter
    a context it is given.

    Args:
        ctx: an ``OpenSSL.SSL.Context`` (``TLS_SERVER_METHOD``).
        protocols: ALPN ids to accept, e.g. ``alpn_protocols(version)``; empty: no ALPN.

    Returns:
        ``ctx``.
    """
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | getattr(SSL, "OP_NO_RENEGOTIATION", 0))
    ctx.set_cipher_list(CIPHERS.encode())
    if protocols:
        ctx.set_alpn_select_callback(alpn_selector(protocols))
    return ctx


def default_context(host: str | None, protocols: Sequence[bytes]) -> SSL.Context:
    """A configured context with a fresh self-signed certificate (the seed's ``ctx = nil``).

    Args:
        host: the host the server listens on (see :func:`self_signed`).
        protocols: ALPN ids to accept (see :func:`configure`).
    """
    cert, key = self_signed(host)
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate(cert)
    ctx.use_privatekey(key)
    ctx.check_privatekey()
    return configure(ctx, protocols)
