"""What a connection's first bytes say, before any protocol library is loaded.

Connection set-up (``prefork.aio.setup``) asks these on every new connection, so they live
apart from :mod:`prefork.protocol.tls` (pyOpenSSL, cryptography) and
:mod:`prefork.protocol.http2` (h2): a worker that only ever sees plaintext HTTP/1 never imports
those (docs/architecture.md, "Imports on first need"). Both modules re-export their function.
"""

from __future__ import annotations

__all__ = ["PREFACE", "looks_like_tls", "preface_match"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 section 3.4


def preface_match(data: bytes) -> bool | None:
    """True: ``data`` starts with the HTTP/2 preface; None: too short to tell; False: not it."""
    if len(data) >= len(PREFACE):
        return data.startswith(PREFACE)
    return None if PREFACE.startswith(data) else False


def looks_like_tls(first: bytes) -> bool | None:
    """Do the first bytes from a client start a TLS ClientHello?

    A TLS record header (RFC 8446 section 5.1) is type 22 (handshake), legacy version 3.1-3.3,
    a two-byte length; the handshake message starts with type 1 (ClientHello, section 4).
    So ``16 03 01..03 xx xx 01``. No HTTP request line starts with byte 0x16, so a plaintext
    client is known from its first byte; six bytes settle it for TLS.

    Returns:
        True or False, or None when more bytes are needed to tell.
    """
    n = len(first)
    if n == 0:
        return None
    if first[0] != 0x16 or (n > 1 and first[1] != 0x03):
        return False
    if n > 2 and not 0x01 <= first[2] <= 0x03:
        return False
    if n < 6:
        return None
    return first[5] == 0x01
