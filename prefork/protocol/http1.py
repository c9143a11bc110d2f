"""HTTP/1.0 and HTTP/1.1 requests for a server, sans-I/O.

:class:`RequestParser` checks each request head itself (:mod:`prefork.protocol.h1head`: bare
LF, obs-fold, limits, Content-Length with Transfer-Encoding, repeated Content-Length), then
lets h11 parse the head, then frames the body itself: h11 is lenient where RFC 9112 lets a
recipient be, and a server behind a proxy must not be (request smuggling). A fresh
``h11.Connection`` per head (0.8 us) replaces ``start_next_cycle``, so pipelined bytes pass
through the same check. The response half is :mod:`prefork.protocol.h1response`. This module
is the seam for another parser (httptools): the glue only uses ``RequestParser``'s methods and
the event classes it returns. See docs/architecture.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import h11

from prefork.errors import ProtocolError
from prefork.headers import Headers
from prefork.protocol.h1head import check_target, scan_head, split_absolute, valid_host

NEED_DATA = h11.NEED_DATA
PAUSED = h11.PAUSED
Request = h11.Request
ConnectionClosed = h11.ConnectionClosed


@dataclass(frozen=True)
class Limits:
    """Hard limits on what a client may send (RFC 9112 section 2.3 leaves them to the server).

    Attributes:
        max_request_line: longest request line in bytes; longer -> 414.
        max_header_count: most header fields in a request head; more -> 431.
        max_head_size: largest request head (request line + header section) in bytes -> 431.
        max_body_size: largest request body in bytes, None for no limit -> 413.
    """

    max_request_line: int = 8190
    max_header_count: int = 100
    max_head_size: int = 65536
    max_body_size: int | None = None


class Data:
    """A piece of request body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data


class EndOfMessage:
    """The end of a request body, with its trailer fields (lower-case bytes names)."""

    __slots__ = ("headers",)

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers


_HEX = frozenset(b"0123456789abcdefABCDEF")
_MAX_CHUNK_LINE = 4096
_FIELD = re.compile(  # RFC 9110 section 5: field-name ":" OWS field-value OWS
    rb"([!#$%&'*+\-.^_`|~0-9a-zA-Z]+):[ \t]*"
    rb"([\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?[ \t]*\Z"
)
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_EXT = re.compile(  # RFC 9112 section 7.1.1: *( BWS ";" BWS name [ BWS "=" BWS value ] )
    rb"(?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*\Z" % (_TOKEN, _TOKEN, _QUOTED)
)
_EMPTY_LINES = re.compile(rb"(?:\r\n)*")
_MAX_LENGTH = b"9223372036854775807"  # 2**63 - 1: a signed 64-bit parser in front reads it too
_NO_BODY, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _DONE, _FAILED = range(8)


class RequestParser:
    """Turns the bytes of one connection into events, one request at a time.

    Events: ``h11.Request``, :class:`Data`, :class:`EndOfMessage`, ``h11.ConnectionClosed``,
    and the sentinels ``NEED_DATA`` (feed more bytes) and ``PAUSED`` (request complete: answer
    it, then call :meth:`start_next_cycle`).

    h11 parses each request head; the body is framed here (RFC 9112 sections 6 and 7), because
    h11's chunked reader waits for chunk sizes of up to 20 hex digits (a 64-bit proxy in front
    would wrap them) and accepts bare LF in the trailer section.
    """

    __slots__ = (
        "_buf",
        "_eof",
        "_error",
        "_left",
        "_limits",
        "_scanned",
        "_state",
        "body_received",
    )

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._buf: bytes | bytearray = b""
        self._state: int | None = None  # None: waiting for a request head
        self._left = 0
        self._eof = False
        self._scanned = 0  # bytes of an incomplete head or trailer section already checked
        self._error: ProtocolError | None = None  # once failed, the parser stays failed
        self.body_received = 0

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
        elif not self._buf:
            self._buf = data  # the common case: one segment holds what is pending, no copy
        elif isinstance(self._buf, bytearray):
            self._buf += data  # appending to a bytearray is amortised linear
        else:
            self._buf = bytearray(self._buf) + data

    @property
    def waiting_for_request(self) -> bool:
        """True between requests: no part of a request has been accepted yet."""
        return self._state is None

    @property
    def pending(self) -> int:
        """Bytes received and not parsed yet (bounded by the caller through pause_reading)."""
        return len(self._buf)

    def next_event(self) -> Any:
        """Return the next event; raise :class:`ProtocolError` on bad input, and the same
        error again on every later call (the bytes after it are not read as a message)."""
        state = self._state
        try:
            if state is None:
                return self._next_request()
            if state == _LENGTH:
                return self._next_data()
            if state == _DONE:
                return PAUSED
            if state == _NO_BODY:
                self._state = _DONE
                return EndOfMessage([])
            if state == _FAILED:
                raise self._error  # type: ignore[misc]
            return self._next_chunked()
        except ProtocolError as exc:
            self._state, self._error = _FAILED, exc
            raise

    def start_next_cycle(self) -> None:
        """Forget the finished request; bytes already received start the next one."""
        self._state = None
        self.body_received = 0

    def take_trailing_data(self) -> bytes:
        """Bytes received and not parsed (for a connection being taken over)."""
        data, self._buf = self._buf, b""
        return bytes(data)

    def _next_request(self) -> Any:
        buf = self._buf
        if buf[:1] == b"\r":  # RFC 9112 section 2.2: ignore empty lines (CRLF) before a request
            buf = self._buf = buf[_EMPTY_LINES.match(buf).end() :]  # type: ignore[union-attr]
            self._scanned = 0
            if buf == b"\r" and not self._eof:
                return NEED_DATA  # the CR of one more CRLF
        end = scan_head(buf, self._limits, self._scanned)
        if end < 0:
            self._scanned = len(buf)
            if not self._eof:
                return NEED_DATA
            if buf:
                raise ProtocolError("connection closed in the middle of a request head")
            return ConnectionClosed()
        self._scanned = 0
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_head_size)
        conn.receive_data(bytes(buf[:end]))
        self._buf = buf[end:]
        try:
            event: Any = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ProtocolError(str(exc), exc.error_status_hint) from None
        self._check_request(event)
        return event

    def _check_request(self, event: h11.Request) -> None:
        limits = self._limits
        version = event.http_version
        if not version.startswith(b"1."):  # RFC 9110 section 15.6.6
            raise ProtocolError("HTTP version not supported", 505)
        if len(event.headers) > limits.max_header_count:
            raise ProtocolError("too many header fields", 431)
        if event.target[:1] != b"/" or event.method == b"CONNECT":
            check_target(event.method, event.target)
        if version > b"1.1" and not any(n.lower() == b"host" for n, _ in event.headers.raw_items()):
            # RFC 9110 section 2.5: served as 1.1, so RFC 9112 section 3.2 applies (h11 only
            # asks 1.1 for a Host)
            raise ProtocolError("missing Host")
        self._state = _NO_BODY
        for raw_name, value in event.headers.raw_items():  # 2x faster than iterating headers
            name = raw_name.lower()
            if name == b"host" and not valid_host(value):
                raise ProtocolError("invalid Host")  # RFC 9112 section 3.2: 400
            if name == b"content-length":
                if len(value) > 18 and (len(value) > 19 or value > _MAX_LENGTH):
                    # RFC 9110 section 8.6: anticipate large numerals; a proxy in front that
                    # wraps at 64 bits would frame the body otherwise (smuggling)
                    raise ProtocolError("Content-Length too large to be safe")
                self._left = int(value)
                if limits.max_body_size is not None and self._left > limits.max_body_size:
                    raise ProtocolError("request body too large", 413)
                self._state = _LENGTH if self._left else _NO_BODY
            elif name == b"transfer-encoding":
                if event.http_version == b"1.0":
                    # RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
                    raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
                self._state = _CHUNK_SIZE  # h11 refused any coding but chunked (501)

    def _count(self, size: int) -> None:
        self.body_received += size
        limit = self._limits.max_body_size
        if limit is not None and self.body_received > limit:
            raise ProtocolError("request body too large", 413)

    def _next_data(self) -> Any:
        buf = self._buf
        if not buf:
            if self._eof:
                raise ProtocolError("connection closed in the middle of a request body")
            return NEED_DATA
        left = self._left
        if len(buf) <= left:
            data, self._buf = buf, b""
        else:
            data, self._buf = buf[:left], buf[left:]
        left -= len(data)
        self._left = left
        self._count(len(data))
        if not left:
            self._state = _NO_BODY if self._state == _LENGTH else _CHUNK_END
        return Data(data)

    def _next_chunked(self) -> Any:
        while True:
            state = self._state
            if state == _CHUNK_DATA:
                return self._next_data()
            if state == _CHUNK_END:
                if len(self._buf) < 2:
                    if self._buf not in (b"", b"\r"):
                        raise ProtocolError("chunk data not followed by CRLF")
                    return self._need_data()
                if self._buf[:2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF")
                self._buf = self._buf[2:]
                self._state = _CHUNK_SIZE
            elif state == _CHUNK_SIZE:
                line = self._line(_MAX_CHUNK_LINE, "chunk size line too long", 400)
                if line is None:
                    return self._need_data()
                self._left = _chunk_size(line)
                limit = self._limits.max_body_size
                if limit is not None and self.body_received + self._left > limit:
                    raise ProtocolError("request body too large", 413)
                self._state = _CHUNK_DATA if self._left else _TRAILERS
            else:
                return self._trailers()

    def _trailers(self) -> Any:
        buf = self._buf
        if buf[:2] == b"\r\n":
            self._buf = buf[2:]
            self._state = _DONE
            return EndOfMessage([])
        start = self._scanned
        end = buf.find(b"\r\n\r\n", max(0, start - 3))
        stop = len(buf) if end < 0 else end + 2
        if buf.count(b"\n", start, stop) != buf.count(b"\r\n", max(0, start - 1), stop):
            raise ProtocolError("bare LF in trailer section")
        if stop > self._limits.max_head_size:
            raise ProtocolError("trailer section too large", 431)
        if end < 0:
            self._scanned = len(buf)
            return self._need_data()
        self._scanned = 0
        fields = []
        for line in bytes(buf[:end]).split(b"\r\n"):
            match = _FIELD.match(line)
            if match is None:
                raise ProtocolError("invalid trailer field")
            fields.append((match.group(1).lower(), match.group(2) or b""))
        if len(fields) > self._limits.max_header_count:
            raise ProtocolError("too many trailer fields", 431)
        self._buf = buf[end + 4 :]
        self._state = _DONE
        return EndOfMessage(fields)

    def _line(self, limit: int, message: str, status: int) -> bytes | bytearray | None:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > limit:
                raise ProtocolError(message, status)
            if b"\n" in buf:
                raise ProtocolError("bare LF in chunked body")
            return None
        line = buf[:end]
        if b"\n" in line:
            raise ProtocolError("bare LF in chunked body")
        self._buf = buf[end + 2 :]
        return line

    def _need_data(self) -> Any:
        if self._eof:
            raise ProtocolError("connection closed in the middle of a request body")
        return NEED_DATA


def _chunk_size(line: bytes | bytearray) -> int:
    """RFC 9112 section 7.1: ``chunk-size [ chunk-ext ]``; at most 16 hex digits (2**64 - 1).

    Extensions are ignored (section 7.1.1) but must follow the grammar: one a proxy in front
    parses differently could hide the end of the size line.
    """
    at = line.find(b";")
    size = line if at < 0 else line[:at].rstrip(b" \t")  # BWS before an extension
    if not size or len(size) > 16 or not _HEX.issuperset(size):
        raise ProtocolError("invalid chunk size")
    if at >= 0 and _CHUNK_EXT.match(line, len(size)) is None:
        raise ProtocolError("invalid chunk extension")
    return int(size, 16)


@dataclass(slots=True)
class RequestInfo:
    """What the glue needs to know about a request, read in one pass over its fields."""

    headers: Headers
    method: bytes
    version: float
    keep_alive: bool
    expects_continue: bool


def describe_request(event: h11.Request, scheme: str) -> RequestInfo:
    """Build the request's :class:`Headers` (pseudo-headers first) and its connection flags.

    ``:authority`` comes from ``Host`` (RFC 9110 section 7.2) and the Host field is kept too;
    CONNECT has ``:authority`` from the target and no ``:path`` (RFC 9113 section 8.5). An
    absolute-form target gives ``:scheme``, ``:authority`` and ``:path``, and its authority
    replaces the value of a received Host field (RFC 9112 section 3.2.2: the origin server
    MUST ignore Host and use the target's authority).
    """
    method = event.method
    target = event.target.decode("latin-1")
    headers = Headers()
    append = headers.append
    append(":method", method.decode("ascii"), False)
    authority = None  # an absolute-form target's
    if method == b"CONNECT":
        append(":authority", target, False)
    elif target[:1] == "/" or target == "*":
        append(":path", target, False)
        append(":scheme", scheme, False)
    else:
        target_scheme, authority, path = split_absolute(method, event.target)
        append(":path", path, False)
        append(":scheme", target_scheme, False)
        append(":authority", authority, False)
    # RFC 9110 section 2.5: a higher 1.x minor version is served as 1.1
    version = 1.0 if event.http_version == b"1.0" else 1.1
    connection = b""
    expect = b""
    for raw_name, value in event.headers.raw_items():  # 2x faster than iterating headers
        name = raw_name.lower()
        if name == b"host" and method != b"CONNECT":
            if authority is None:
                append(":authority", value.decode("latin-1"), False)
            else:
                value = authority.encode("latin-1")
        elif name == b"connection":
            connection += b"," + value.lower()
        elif name == b"expect":
            expect = value.lower()
        append(name.decode("latin-1"), value.decode("latin-1"))
    tokens = {t.strip() for t in connection.split(b",")} if connection else ()
    # RFC 9112 section 9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive".
    keep_alive = b"close" not in tokens if version == 1.1 else b"keep-alive" in tokens
    return RequestInfo(
        headers, method, version, keep_alive, version == 1.1 and expect == b"100-continue"
    )
