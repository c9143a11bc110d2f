"""What both TLS engines share: the error a bad peer raises, the protocol settings, ALPN ids.

prefork speaks TLS through pyOpenSSL (:mod:`prefork.protocol.tls`) or the standard library's
``ssl`` module (:mod:`prefork.protocol.stdtls`); docs/tls.md says what each offers. This module
imports neither library, so whichever engine a server uses, it loads only that one.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["CIPHERS", "MAX_PLAINTEXT", "Session", "TLSError", "alpn_protocols"]

# TLS 1.2 suites (RFC 9325 section 4.2: ECDHE, AEAD only), ECDSA first since our generated key is
# P-256. TLS 1.3 suites are OpenSSL's defaults, all AEAD. None is on RFC 9113 appendix A's
# list of suites HTTP/2 forbids.
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)

# The most plaintext one record carries (RFC 8446 section 5.1, RFC 5246 section 6.2.1: 2^14):
# one SSL_read never returns more, so a larger read buffer is only a larger allocation.
MAX_PLAINTEXT = 16384


class TLSError(ConnectionError):
    """The peer broke TLS (bad handshake, bad record, unexpected message).

    A ``ConnectionError``: like a reset, it ends this one connection and is not an error of the
    server. The session has usually queued an alert in its ``data_to_send()`` for the peer.
    """


class Session(Protocol):
    """One server-side TLS connection, sans-I/O: what either engine's session offers.

    Attributes:
        connection: the library's connection object, what ``stream.checktls()`` returns.
        established: the handshake has completed.
        peer_closed: the peer sent close_notify.
        alpn: the protocol ALPN chose, None if none.
    """

    connection: Any
    established: bool
    peer_closed: bool

    @property
    def alpn(self) -> bytes | None: ...
    def receive_data(self, data: bytes) -> None: ...
    def read(self) -> bytes: ...
    def send(self, data: bytes | bytearray | memoryview) -> None: ...
    def data_to_send(self, hint: int = 0) -> bytes: ...
    def shutdown(self) -> None: ...


def alpn_protocols(version: float | None, *, h2: bool = False) -> tuple[bytes, ...]:
    """The ALPN protocol ids a server with option ``version`` accepts, most preferred first.

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
