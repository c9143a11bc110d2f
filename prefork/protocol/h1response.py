"""HTTP/1.0 and HTTP/1.1 responses for a server, sans-I/O.

:class:`ResponseFramer` writes one response: status line, header block and body framing
(RFC 9112 section 6.3). It is written here rather than sent through h11 because the response
side of h11 costs about 23 us per request (half of h11's cost, measured with timeit), cannot
write an ``HTTP/1.0`` status line (the seed's ``version = 1.0``), and cannot keep an HTTP/1.0
connection alive. See docs/architecture.md, departure (a).

:func:`check_field` is the field check HTTP/2 responses share.
"""

from __future__ import annotations

import re
from http import HTTPStatus

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_good_names: set[str] = set()
_STATUS_LINES: dict[tuple[int, float], bytes] = {}

NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = range(4)


def status_line(status: int, version: float) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n``, cached; an unknown code gets an empty reason (RFC 9112 4)."""
    line = _STATUS_LINES.get((status, version))
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f":status must be a 3-digit code, got {status!r}")
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        line = f"HTTP/{version} {status} {reason}\r\n".encode("ascii")
        if len(_STATUS_LINES) < 2048:
            _STATUS_LINES[(status, version)] = line
    return line


def check_field(name: str, value: str) -> None:
    """Raise ValueError for a field name that is no token or a value with control bytes."""
    if name not in _good_names:
        if not _TOKEN.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if len(_good_names) < 4096:
            _good_names.add(name)
    # isprintable(): no control character at all, the common case (C speed); HTAB and the
    # characters isprintable() refuses beyond ASCII (NBSP...) go to the exact test
    if not value.isprintable() and _BAD_VALUE.search(value):
        raise ValueError(f"invalid characters in value of header {name!r}")


class ResponseFramer:
    """Frames one response to one request (RFC 9112 section 6.3, RFC 9110 section 6.4.1).

    Args:
        method: the request method (bytes, as parsed).
        peer_version: the request's HTTP version, 1.0 or 1.1.
        keep_alive: whether the request allows the connection to persist.
        version: the version this server speaks on the connection (1.0 or 1.1).

    After :meth:`head`, ``keep_alive`` says whether the connection may persist after this
    response; ``mode`` is one of NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE.
    """

    __slots__ = ("keep_alive", "method", "mode", "peer_version", "remaining", "version")

    def __init__(
        self, method: bytes, peer_version: float, keep_alive: bool, version: float
    ) -> None:
        self.method = method
        self.peer_version = peer_version
        self.version = version
        self.keep_alive = keep_alive
        self.mode = NO_BODY
        self.remaining = 0

    def head(
        self, status: int, fields: list[tuple[str, str]], end_stream: bool, date: str
    ) -> bytes:
        """Serialize the status line and header section, choosing the body framing.

        Args:
            status: the status code.
            fields: (name, value) pairs; pseudo-headers are skipped.
            end_stream: no body follows (lets an unframed response say Content-Length: 0).
            date: the IMF-fixdate to send when the fields have no Date (RFC 9110 6.6.1).

        Raises:
            ValueError: a header name or value that cannot be sent.
        """
        out: list[str] = []
        length, chunked, has_date, says_close = self._fields(status, fields, out)
        if says_close:
            self.keep_alive = False
        if status < 200:
            return self._informational(status, out)
        # RFC 9112 section 6.3, for a final response: the body's framing
        method = self.method
        if method == b"HEAD" or status in (204, 304) or (method == b"CONNECT" and status < 300):
            self.mode = NO_BODY
        elif length is not None and not chunked:
            self.mode, self.remaining = LENGTH, length
        elif end_stream and not chunked:
            self.mode = LENGTH
            out.append("content-length: 0\r\n")
        elif self.version == 1.1 and self.peer_version == 1.1:
            self.mode = CHUNKED
            out.append("transfer-encoding: chunked\r\n")
        else:
            self.mode, self.keep_alive = UNTIL_CLOSE, False
        if length is not None and chunked and self.mode != NO_BODY:
            raise ValueError("both content-length and transfer-encoding given")
        if not has_date:
            out.append(f"date: {date}\r\n")
        if not self.keep_alive:
            if not says_close:
                out.append("connection: close\r\n")
        elif self.version == 1.0 or self.peer_version == 1.0:
            out.append("connection: keep-alive\r\n")  # RFC 9112 section 9.3: 1.0 opts in
        out.append("\r\n")
        try:
            block = "".join(out).encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("header values must be latin-1 text") from None
        return status_line(status, self.version) + block

    @staticmethod
    def _fields(
        status: int, fields: list[tuple[str, str]], out: list[str]
    ) -> tuple[int | None, bool, bool, bool]:
        """Check and append the fields; return (content-length, chunked, has date, close)."""
        length = None
        chunked = has_date = says_close = False
        for name, value in fields:
            if name[0] == ":":
                continue
            if name not in _good_names or not value.isprintable():
                check_field(name, value)  # the two tests of check_field, inline when they pass
            if name == "content-length":
                if not value.isdigit() or length is not None:
                    raise ValueError(f"invalid content-length {value!r}")
                length = int(value)
                if status < 200 or status == 204:
                    continue  # RFC 9110 section 8.6: MUST NOT send it there
            elif name == "transfer-encoding":
                if value.lower() != "chunked":
                    raise ValueError("transfer-encoding other than chunked is not supported")
                chunked = True
                continue  # written below when the framing is chosen
            elif name == "connection" and "close" in value.lower():
                says_close = True
            elif name == "date":
                has_date = True
            out.append(f"{name}: {value}\r\n")
        return length, chunked, has_date, says_close

    def _informational(self, status: int, out: list[str]) -> bytes:
        out.append("\r\n")
        return status_line(status, self.version) + "".join(out).encode("latin-1")

    def data(self, chunk: bytes) -> bytes:
        """Frame one piece of body; raises ValueError past the declared Content-Length."""
        mode = self.mode
        if mode == LENGTH:
            if len(chunk) > self.remaining:
                raise ValueError("response body longer than its content-length")
            self.remaining -= len(chunk)
            return chunk
        if mode == CHUNKED:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunk else b""
        if mode == UNTIL_CLOSE:
            return chunk
        return b""  # no body allowed (HEAD, 204, 304): drop it, as RFC 9110 9.3.2 implies

    def frame_size(self, size: int) -> tuple[bytes, bytes]:
        """Prefix and suffix around ``size`` bytes sent without copying (sendfile)."""
        if self.mode == LENGTH:
            if size > self.remaining:
                raise ValueError("response body longer than its content-length")
            self.remaining -= size
        elif self.mode == CHUNKED and size:
            return b"%x\r\n" % size, b"\r\n"
        return b"", b""

    def end(self, trailers: list[tuple[str, str]] | None = None) -> bytes:
        """Finish the body; trailers go out only with chunked framing (RFC 9112 section 7.1.2).

        Raises:
            ValueError: when fewer bytes were sent than the Content-Length promised; the
                connection must then be closed, since the client cannot find the next response.
        """
        if self.mode == CHUNKED:
            if not trailers:
                return b"0\r\n\r\n"
            lines = []
            for name, value in trailers:
                check_field(name, value)
                lines.append(f"{name}: {value}\r\n")
            return b"0\r\n" + "".join(lines).encode("latin-1") + b"\r\n"
        if self.mode == LENGTH and self.remaining:
            raise ValueError(f"response ended {self.remaining} bytes short of its content-length")
        return b""
