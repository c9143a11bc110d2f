"""TLS for a server, sans-I/O: a pyOpenSSL connection on memory BIOs, and the server context.

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
import datetime
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL

from prefork.protocol.sniff import looks_like_tls

__all__ = [
    "CIPHERS",
    "TLSError",
    "TLSSession",
    "alpn_protocols",
    "alpn_selector",
    "configure",
    "default_context",
    "looks_like_tls",
    "self_signed",
]

# SSL_read returns at most one record (16 KiB of plaintext, RFC 8446 section 5.1) per call with
# today's OpenSSL; the large buffer costs nothing extra (pyOpenSSL does not zero it) and lets an
# OpenSSL that returns several records at once do so.
READ_SIZE = 256 * 1024
# Ciphertext per record beyond its plaintext: header, IV/nonce, tag or MAC, CBC padding.
_RECORD_OVERHEAD = 512
_RECORD_SIZE = 16384

# TLS 1.2 suites (RFC 9325 section 4.2: ECDHE, AEAD only), ECDSA first since our generated key is
# P-256. TLS 1.3 suites are OpenSSL's defaults, all AEAD. None is on RFC 9113 appendix A's
# list of suites HTTP/2 forbids.
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
DEFAULT_VALIDITY = datetime.timedelta(days=30)
_WILDCARD_HOSTS = (None, "", "0.0.0.0", "::", "localhost")


class TLSError(ConnectionError):
    """The peer broke TLS (bad handshake, bad record, unexpected message).

    A ``ConnectionError``: like a reset, it ends this one connection and is not an error of the
    server. OpenSSL has usually queued an alert in :meth:`TLSSession.data_to_send` for the peer.
    """


class TLSSession:
    """One server-side TLS connection driven by memory BIOs.

    Attributes:
        connection: the ``OpenSSL.SSL.Connection`` (what ``stream.checktls()`` returns).
        established: the handshake has completed.
        peer_closed: the peer sent close_notify; no more plaintext will come.
    """

    __slots__ = ("_shut", "connection", "established", "peer_closed")

    def __init__(self, ctx: SSL.Context) -> None:
        self.connection = SSL.Connection(ctx, None)  # None: memory BIOs, no socket
        self.connection.set_accept_state()
        self.established = False
        self.peer_closed = False
        self._shut = False

    @property
    def alpn(self) -> bytes | None:
        """The protocol ALPN chose (``b"http/1.1"``...), None if none was (or yet)."""
        return self.connection.get_alpn_proto_negotiated() or None

    def receive_data(self, data: bytes) -> None:
        """Feed ciphertext read from the peer (buffered in OpenSSL until :meth:`read`)."""
        self.connection.bio_write(data)

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
        chunks = []
        recv = conn.recv
        try:
            while True:
                chunks.append(recv(READ_SIZE))
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
        size = hint + (hint // _RECORD_SIZE + 1) * _RECORD_OVERHEAD + 4096
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


def alpn_protocols(version: float | None, *, h2: bool = False) -> tuple[bytes, ...]:
    """The ALPN protocol ids a server with option ``version`` accepts.

    Args:
        version: the server's ``version`` option (None: any).
        h2: offer ``h2`` (only once the server can speak HTTP/2).
    """
    allowed: list[bytes] = []
    if h2 and version in (None, 2):
        allowed.append(b"h2")
    if version in (None, 1.1):
        allowed.append(b"http/1.1")
    if version in (None, 1.0):
        allowed.append(b"http/1.0")
    return tuple(allowed)


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


def self_signed(
    host: str | None,
    *,
    validity: datetime.timedelta = DEFAULT_VALIDITY,
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new P-256 key and a self-signed certificate for ``host``, made in memory.

    P-256 rather than RSA: a handshake signs once with the server key, and ECDSA signing is
    about ten times cheaper than RSA-2048. The serial is random (RFC 5280 section 4.1.2.2);
    the validity is short since nothing should trust this certificate for long.

    Args:
        host: the name or address to certify (subjectAltName); None, a wildcard address or
            ``localhost`` certify ``localhost``, ``127.0.0.1`` and ``::1``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    names = _alt_names(host)
    common = host if host not in _WILDCARD_HOSTS else "localhost"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "prefork self-signed"),
            x509.NameAttribute(NameOID.COMMON_NAME, str(common)[:64]),
        ]
    )
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)  # an hour back: tolerate clients whose clocks run slow
        .not_valid_after(start + validity)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _alt_names(host: str | None) -> list[x509.GeneralName]:
    if host in _WILDCARD_HOSTS:
        return [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    assert host is not None
    try:
        return [x509.IPAddress(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        return [x509.DNSName(host.encode("idna").decode("ascii"))]
    except UnicodeError:  # not a name a certificate can carry: certify localhost instead
        return _alt_names(None)


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
