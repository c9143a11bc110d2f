"""HTTP/1.0 and HTTP/1.1 requests for a server, sans-I/O.

:class:`RequestParser` turns a connection's bytes into events. It finds each request head
itself (:func:`~prefork.protocol.h1head.find_head`: bare LF, limits), reads it
(:func:`~prefork.protocol.h1request.read_request`: the grammar, framing and Host rules, then
the request's headers, in one pass) and frames the body itself (Content-Length or chunked,
RFC 9112 sections 6 and 7): prefork is strict where RFC 9112 lets a recipient be lenient,
because a server behind a proxy must not be (request smuggling). The field lines are cut by
one of two *splitters*, the ``http`` option: ``h11`` (pure Python, the name is uvicorn's) or
``httptools`` (llhttp); the checks are the same for both. The response half is
:mod:`prefork.protocol.h1response`. See docs/architecture.md and docs/performance.md.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from prefork.errors import ProtocolError
from prefork.protocol.h1head import Limits, find_head
from prefork.protocol.h1request import Request, Splitter, read_request, split_fields

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Limits",
    "Request",
    "RequestInfo",
    "RequestParser",
    "Splitter",
    "splitter",
]

RequestInfo = Request  # the name the glue's type hints use


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA: Any = _Sentinel("NEED_DATA")  # feed more bytes
PAUSED: Any = _Sentinel("PAUSED")  # the request is complete: answer it, then start_next_cycle()


class ConnectionClosed:
    """The client closed its side cleanly between requests."""

    __slots__ = ()


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


_END = EndOfMessage([])  # the end of a request without trailers, shared (never mutated)


def splitter(name: str) -> Splitter:
    """The field-line splitter the ``http`` option names: ``h11`` (pure Python),
    ``httptools`` (llhttp), or ``auto`` (httptools when it is installed).

    Raises:
        ImportError: ``httptools`` is named and not installed.
        ValueError: another name.
    """
    if name == "auto":
        name = "httptools" if importlib.util.find_spec("httptools") else "h11"
    if name == "httptools":
        from prefork.protocol.h1httptools import split_fields as split_by_llhttp

        return split_by_llhttp
    if name != "h11":
        raise ValueError(f"no HTTP/1 parser called {name!r}: auto, h11 or httptools")
    return split_fields


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
_NO_BODY, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _DONE, _FAILED = range(8)


class RequestParser:
    """Turns the bytes of one connection into events, one request at a time.

    Events: :class:`~prefork.protocol.h1request.Request`, :class:`Data`,
    :class:`EndOfMessage`, :class:`ConnectionClosed`, and the sentinels ``NEED_DATA`` (feed
    more bytes) and ``PAUSED`` (request complete: answer it, then call
    :meth:`start_next_cycle`).

    Args:
        limits: the server's limits.
        scheme: the connection's (``http`` or ``https``), for ``:scheme``.
        split: the field-line splitter (:func:`splitter`).

    The body is framed here (RFC 9112 sections 6 and 7) with chunk sizes of at most 16 hex
    digits (a 64-bit proxy in front would wrap longer ones) and no bare LF in the trailers.
    """

    __slots__ = (
        "_buf",
        "_eof",
        "_error",
        "_left",
        "_limits",
        "_scanned",
        "_scheme",
        "_split",
        "_state",
        "body_received",
    )

    def __init__(
        self, limits: Limits, scheme: str = "http", split: Splitter = split_fields
    ) -> None:
        self._limits = limits
        self._scheme = scheme
        self._split = split
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
                return _END
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
        if not buf:  # between requests on a keep-alive connection: the common case
            return ConnectionClosed() if self._eof else NEED_DATA
        if buf[:1] == b"\r":  # RFC 9112 section 2.2: ignore empty lines (CRLF) before a request
            buf = self._buf = buf[_EMPTY_LINES.match(buf).end() :]  # type: ignore[union-attr]
            self._scanned = 0
            if buf == b"\r" and not self._eof:
                return NEED_DATA  # the CR of one more CRLF
        end = find_head(buf, self._limits, self._scanned)
        if end < 0:
            self._scanned = len(buf)
            if not self._eof:
                return NEED_DATA
            if buf:
                raise ProtocolError("connection closed in the middle of a request head")
            return ConnectionClosed()
        self._scanned = 0
        if len(buf) == end:
            head, self._buf = bytes(buf), b""
        else:
            head, self._buf = bytes(buf[:end]), buf[end:]
        request = read_request(head, self._limits, self._scheme, self._split)
        length = request.body_length
        if length is None:
            self._state = _CHUNK_SIZE
        elif length:
            self._state, self._left = _LENGTH, length
        else:
            self._state = _NO_BODY
        return request

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
            return _END
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
