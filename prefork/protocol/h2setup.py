"""Entering HTTP/2, sans-I/O: the preface sniff and the h2c upgrade (RFC 9113 3, RFC 7540 3.2).

Pure decisions for the glue (``aio/setup.py`` and the HTTP/1 connection's ``Upgrade: h2c``
hook); :mod:`prefork.protocol.http2` re-exports them.
"""

from __future__ import annotations

import base64
import binascii

from prefork.headers import Headers
from prefork.protocol.sniff import preface_match

__all__ = ["SWITCHING", "h2c_upgrade", "preface_match"]

SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
# RFC 7540 section 3.2.1: these belong to the HTTP/1 hop, not to stream 1.
_UPGRADE_FIELDS = frozenset({"connection", "upgrade", "http2-settings", "keep-alive"})


def h2c_upgrade(headers: Headers, version: float) -> tuple[bytes, Headers] | None:
    """Is this HTTP/1 request an upgrade to HTTP/2 over cleartext (RFC 7540 section 3.2)?

    Only a bodyless HTTP/1.1 request with ``Upgrade: h2c`` and exactly one well-formed
    ``HTTP2-Settings`` qualifies (a body would have to be read as HTTP/1 before switching,
    and RFC 9113 section 3.1 deprecates h2c: no reason to go further).

    Returns:
        ``(settings, request)``: the SETTINGS payload (base64url, as h2 wants it) and the
        request headers for stream 1 without the hop-by-hop upgrade fields; or None.
    """
    upgrade = (headers.get_comma_separated("upgrade") or "").lower()
    if (
        version != 1.1
        or "h2c" not in {t.strip() for t in upgrade.split(",")}
        or headers.get("content-length", "0") != "0"
        or headers.has("transfer-encoding")
        or len(headers.get_as_sequence("http2-settings")) != 1
    ):
        return None
    value = headers.get("http2-settings") or ""
    try:
        settings = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(settings) % 6:
        return None  # RFC 9113 section 6.5.1: six bytes per setting
    request = Headers()
    for name, field_value, never in headers.each():
        if name not in _UPGRADE_FIELDS:
            request.append(name, field_value, never)
    return base64.urlsafe_b64encode(settings), request
