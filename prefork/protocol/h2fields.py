"""HTTP/2 header fields, sans-I/O: requests and trailers checked, responses serialized.

A request's fields arrive from h2 as HPACK decoded them (bytes pairs); :func:`request_fields`
checks them against RFC 9113 sections 8.2 and 8.3 in one pass while it builds the
:class:`~prefork.headers.Headers` a handler sees, and :func:`trailer_fields` does the same
for trailers. h2's own inbound validation is turned off (``validate_inbound_headers``):
it ran seven generators over the fields, one of them byte by byte in Python, and cost more
than everything else prefork does with a small request (9 us for an h2load request, 36 us
for a browser's). The checks here are h2's, field for field (tests/test_protocol_http2.py
compares the verdicts), with one difference in what follows: a malformed request is a
stream error (RST_STREAM PROTOCOL_ERROR, RFC 9113 section 8.1.1), where h2 ended the whole
connection.

A response's fields go the other way (:func:`response_fields`): checked as for HTTP/1
(tokens, control characters), connection-specific fields dropped, ``:status`` first.
"""

from __future__ import annotations

import re
from typing import Any

from hpack import NeverIndexedHeaderTuple

from prefork.errors import ProtocolError
from prefork.headers import NEVER_INDEX_DEFAULTS, Headers
from prefork.protocol.h1response import check_field

__all__ = ["HOP_BY_HOP", "request_fields", "response_fields", "response_head", "trailer_fields"]

# RFC 9113 section 8.2.1: a field name has no character in 0x00-0x20, 0x41-0x5a (upper
# case) or 0x7f-0xff, and no colon but the first of a pseudo-header's.
_NAME = re.compile(rb"[\x21-\x39\x3b-\x40\x5b-\x7e]+").fullmatch
# ... and a value no NUL, CR or LF, and no whitespace (SP, HTAB) at either end.
_CONTROL = re.compile(rb"[\x00\n\r]").search
_WHITESPACE = (0x20, 0x09)
# RFC 9113 section 8.2.2: connection-specific fields make a message malformed.
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
# RFC 9113 section 8.3.1 and RFC 8441 section 4: the pseudo-headers of a request.
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
_NEVER_INDEX_DEFAULTS = frozenset(name.encode("ascii") for name in NEVER_INDEX_DEFAULTS)
_names: dict[bytes, str] = {}  # names that passed the checks, decoded (a bounded cache)


def _check_name(name: bytes, trailer: bool) -> str:
    """``name`` decoded, once it passed the checks (RFC 9113 sections 8.2.1, 8.2.2, 8.3)."""
    if name[:1] == b":":
        if trailer:
            raise ProtocolError(f"pseudo-header field {name!r} in trailers", 400)
        if name not in _REQUEST_PSEUDO:
            raise ProtocolError(f"pseudo-header field {name!r} in a request", 400)
    elif not _NAME(name):
        raise ProtocolError(f"invalid field name {name!r}", 400)
    elif name in _CONNECTION_SPECIFIC:
        raise ProtocolError(f"connection-specific field {name!r}", 400)
    text = name.decode("latin-1")
    if not trailer and len(_names) < 4096:
        _names[name] = text
    return text


def request_fields(raw: Any) -> Headers:
    """h2's header list of a request (bytes pairs) as :class:`Headers`, checked.

    ``:authority`` is filled from ``host`` when the client sent only that (RFC 9113 section
    8.3.1), so handlers see the same fields as from HTTP/1.

    Raises:
        ProtocolError: the request is malformed (RFC 9113 section 8.1.1; status 400).
    """
    pairs: list[tuple[str, str]] = []
    never: list[bool] = []
    pseudo: dict[bytes, bytes] = {}
    regular = False
    host = None
    names = _names
    for field in raw:
        name = field[0]
        value = field[1]
        text = names.get(name)
        if text is None:
            text = _check_name(name, False)
        if value and (_CONTROL(value) or value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
            raise ProtocolError(f"invalid characters in the value of {name!r}", 400)
        if name[0] == 58:  # b":"
            if regular or name in pseudo:
                raise ProtocolError(f"pseudo-header field {name!r} misplaced or repeated", 400)
            pseudo[name] = value
        else:
            regular = True
            if name == b"te" and value.lower() != b"trailers":
                raise ProtocolError(f"te: {value!r} (only trailers is allowed)", 400)
            if name == b"host":
                if host is not None:
                    raise ProtocolError("more than one host field", 400)
                host = value
        pairs.append((text, value.decode("latin-1")))
        # hpack's NeverIndexedHeaderTuple: the client marked it sensitive
        never.append(type(field) is NeverIndexedHeaderTuple or name in _NEVER_INDEX_DEFAULTS)
    _check_pseudo(pseudo, host)
    if b":authority" not in pseudo and host is not None:
        pairs.insert(0, (":authority", host.decode("latin-1")))
        never.insert(0, False)
    return Headers.of_lowercase(pairs, never)


def _check_pseudo(pseudo: dict[bytes, bytes], host: bytes | None) -> None:
    """The pseudo-headers a request must have, and must not (RFC 9113 8.3.1, 8.5; RFC 8441 4)."""
    method = pseudo.get(b":method")
    if method is None:
        raise ProtocolError("no :method", 400)
    if method == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:  # RFC 9113 section 8.5
            raise ProtocolError("CONNECT with :scheme or :path", 400)
    else:  # an extended CONNECT has them too (RFC 8441 section 4)
        if b":scheme" not in pseudo or b":path" not in pseudo:
            raise ProtocolError("no :scheme or no :path", 400)
        if b":protocol" in pseudo and method != b"CONNECT":
            raise ProtocolError(":protocol without CONNECT", 400)
        if not pseudo[b":path"]:
            raise ProtocolError("empty :path", 400)
    authority = pseudo.get(b":authority")
    if authority is None and host is None:
        raise ProtocolError("no :authority and no host", 400)
    if authority is not None and host is not None and authority != host:
        # RFC 9113 section 8.3.1: they must name the same
        raise ProtocolError(":authority and host differ", 400)


def trailer_fields(raw: Any) -> Headers:
    """h2's header list of trailers as :class:`Headers`, checked as a request's fields are;
    pseudo-headers are not allowed (RFC 9113 section 8.1).

    Raises:
        ProtocolError: the trailers are malformed (status 400).
    """
    headers = Headers()
    for field in raw:
        name = field[0]
        value = field[1]
        text = _check_name(name, True)
        if value and (_CONTROL(value) or value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
            raise ProtocolError(f"invalid characters in the value of {name!r}", 400)
        if name == b"te" and value.lower() != b"trailers":
            raise ProtocolError(f"te: {value!r} (only trailers is allowed)", 400)
        never = type(field) is NeverIndexedHeaderTuple or None
        headers.append(text, value.decode("latin-1"), never)
    return headers


# RFC 9113 section 8.2.2: connection-specific fields are malformed in HTTP/2; a handler
# written for HTTP/1 may set them, so they are dropped rather than refused.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"}
)


# RFC 9110 section 5.5: no control character in a value but HTAB (as check_field for HTTP/1)
_BAD_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search
_encoded: dict[str, bytes] = {}  # response field names checked, encoded (a bounded cache)


def _encode_name(name: str) -> bytes:
    check_field(name, "")  # a token (ValueError if not); lower case is Headers' doing
    encoded = name.encode("latin-1")
    if len(_encoded) < 4096:
        _encoded[name] = encoded
    return encoded


def response_head(headers: Headers) -> tuple[list[Any], int, str | None, bool]:
    """A response head as h2 sends it, in one pass: ``(fields, status, length, dated)``.

    ``fields`` are as :func:`response_fields` makes them; ``status`` is ``:status`` as an
    int; ``length`` the ``content-length`` value (None: none); ``dated``: a ``date`` field
    is present.

    Raises:
        ValueError: ``:status`` missing or not 3 digits, more than one ``content-length``,
            or a field that cannot be sent.
    """
    out: list[Any] = [None]  # :status goes first (RFC 9113 section 8.3)
    status = length = None
    lengths = 0
    dated = False
    encoded = _encoded
    for name, value, never in headers.each():
        if name[0] == ":":
            if name == ":status":
                status = value
            continue
        bname = encoded.get(name)
        if bname is None:
            if name in HOP_BY_HOP:
                continue
            bname = _encode_name(name)
        if _BAD_TEXT(value):
            raise ValueError(f"invalid characters in value of header {name!r}")
        if name == "content-length":
            length = value
            lengths += 1
        elif name == "date":
            dated = True
        pair = (bname, value.strip(" \t").encode("latin-1"))  # RFC 9113 8.2.1: no whitespace
        out.append(NeverIndexedHeaderTuple(*pair) if never else pair)
    if not (isinstance(status, str) and len(status) == 3 and status.isdigit()):
        raise ValueError(f"response headers need a 3-digit ':status', got {status!r}")
    if lengths > 1:
        raise ValueError(f"{lengths} content-length fields")
    out[0] = (b":status", status.encode("ascii"))
    return out, int(status), length, dated


def response_fields(headers: Headers) -> list[Any]:
    """Fields as the pairs h2 sends, without pseudo-headers (trailers, RFC 9113 section 8.1,
    and a promised request's fields): validated, hop-by-hop fields dropped, never-index kept.

    Plain ``(name, value)`` tuples are indexable for HPACK; a never-indexed field becomes an
    hpack ``NeverIndexedHeaderTuple``.
    """
    out: list[Any] = []
    for name, value, never in headers.each():
        if name[0] == ":" or name in HOP_BY_HOP:
            continue
        check_field(name, value)
        value = value.strip(" \t")  # RFC 9113 section 8.2.1: no surrounding whitespace
        pair = (name.encode("latin-1"), value.encode("latin-1"))
        out.append(NeverIndexedHeaderTuple(*pair) if never else pair)
    return out
