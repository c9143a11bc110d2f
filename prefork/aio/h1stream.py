"""The HTTP/1 stream: one request and its response on an :class:`~prefork.aio.http1.H1Connection`.

The connection feeds it (``_feed``, ``_feed_end``, ``_fail``, ``_lost``) and the handler reads
and writes through it; the framing itself is :class:`~prefork.protocol.ResponseFramer`'s.
"""

from __future__ import annotations

import asyncio
import os
import stat
from typing import TYPE_CHECKING, Any

from prefork.aio.common import CLOSED, error_response, finite, response_status
from prefork.errors import ProtocolError, StreamStateError
from prefork.headers import Headers
from prefork.protocol.h1response import NO_BODY, ResponseFramer
from prefork.stream import Stream, within

if TYPE_CHECKING:
    from prefork.aio.http1 import H1Connection
    from prefork.protocol.http1 import Request

DRAIN_LIMIT = 256 * 1024  # unread request body read and dropped to keep a connection
COPY_LIMIT = 16384  # a body piece this large is written without copying it into its framing
SENDFILE_PIECE = 256 * 1024  # a client slower than this per write_timeout is cut off


class H1Stream(Stream):
    """One request and its response on an HTTP/1 connection (the contract: docs/stream.md).

    Attributes:
        request_headers: the request headers (pseudo-headers first).
        status: the final status written (None before the response head), for access logs.
        bytes_sent: response body bytes written so far.
    """

    # Class defaults, set on the instance when they change: a stream is made per request.
    _buffered = 0
    _body_done = False
    _trailers: Headers | None = None
    _read_error: BaseException | None = None
    _headers_read = 0
    _want_all = False
    _discarding = False
    _framer: ResponseFramer | None = None
    _pending = b""
    _continue_sent = False
    _response_done = False
    status: int | None = None
    bytes_sent = 0

    def __init__(self, connection: H1Connection, info: Request) -> None:
        self.connection = connection
        self.peer_version = info.version
        self._info = info
        self._chunks: list[bytes] = []

    @property
    def request_headers(self) -> Headers:  # type: ignore[override]
        """The request headers (pseudo-headers first); reading them consumes nothing."""
        return self._info.headers

    def __repr__(self) -> str:
        h = self._info.headers
        return f"<prefork.H1Stream {h.get(':method')} {h.get(':path')}>"

    # -- fed by the connection -------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._discarding:
            self._buffered += len(data)
            if self._buffered > DRAIN_LIMIT:
                self.connection._close_after_response()
            return
        self._chunks.append(bytes(data))
        self._buffered += len(data)
        self._wake()

    def _feed_end(self, trailers: Any) -> None:
        self._body_done = True
        if trailers:
            self._trailers = Headers(
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in trailers
            )
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._read_error is None:  # the first error is the one that counts (413, not 400)
            self._read_error = exc
        self._wake()

    def _peer_closed(self) -> None:
        """The client shut its sending side (EOF): a response may still reach it."""
        self._disconnect()

    def _lost(self) -> None:
        if not self._body_done and self._read_error is None:
            self._read_error = ConnectionResetError("client closed the connection")
        self._disconnect()

    # -- reading ----------------------------------------------------------------------------------

    async def get_headers(self, timeout: float | None = None) -> Headers | None:
        """Request headers on the first call; the trailers (None if none) once the body ended."""
        self._headers_read += 1
        if self._headers_read == 1:
            return self._info.headers
        if self._headers_read > 2:
            return None
        self._want_all = True  # the caller skips to the trailers: keep the body for later reads
        self.connection._resume_reading()
        self.connection._pump()
        while not self._body_done:
            if self._read_error is not None:
                raise self._read_error
            self._send_continue()
            await self._wait(timeout)
        return self._trailers

    async def _read_chunk(self, timeout: float | None) -> bytes | None:
        chunks = self._chunks
        while not chunks:
            if self._read_error is not None:
                raise self._read_error
            if self._body_done:
                return None
            self._send_continue()
            await self._wait(timeout)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        conn = self.connection
        if not conn._reading:
            conn._resume_reading()
            conn._pump()
        return data

    def _send_continue(self) -> None:
        # RFC 9110 section 10.1.1: the client waits for 100 before sending the body; reading
        # the body is the handler saying "go on".
        if (
            self._info.expects_continue
            and not self._continue_sent
            and self._framer is None
            and self.connection.version == 1.1  # HTTP/1.0 has no 1xx
        ):
            self._continue_sent = True
            self.connection._write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- writing ----------------------------------------------------------------------------------

    async def write_continue(self, timeout: float | None = None) -> None:
        """Send ``100 Continue`` (once; only to a client that asked for it)."""
        self._send_continue()
        await self.connection._wait_writable(timeout)

    async def write_headers(
        self, headers: Headers, end_stream: bool, timeout: float | None = None
    ) -> None:
        """Send the response head; 1xx heads may come first; after the head, trailers.

        Raises:
            ValueError: missing or bad ``:status``, or a header that cannot be sent.
            StreamStateError: the response is already complete.
            BrokenPipeError: the client is gone.
        """
        if self._response_done:
            raise StreamStateError("the response is already complete")
        conn = self.connection
        framer = self._framer
        if framer is not None:
            if not end_stream:
                raise StreamStateError("headers after the response head are trailers: end_stream")
            self._complete(framer.end([f for f in headers.items() if f[0][0] != ":"]))
            return
        status = response_status(headers)
        info = self._info
        if status < 200:
            # RFC 9110 section 15.2: no 1xx to an HTTP/1.0 client, none from a 1.0 server
            if self.peer_version >= 1.1 and conn.version == 1.1:
                if status == 100:
                    self._continue_sent = True
                interim = ResponseFramer(info.method, info.version, True, conn.version)
                conn._write(interim.head(status, headers.items(), False, ""))
            await conn._wait_writable(timeout)
            return
        # A client that asked for 100-continue and did not get it may never send the body:
        # then the connection cannot be reused (RFC 9110 section 10.1.1). A draining server
        # ends each connection after its response: HTTP/1 has no other way to move a client
        # off, and closing it idle would race with a request the client may be sending.
        keep_alive = (
            info.keep_alive
            and not conn._closing
            and not conn.host.draining
            and not (info.expects_continue and not self._continue_sent and not self._body_done)
        )
        self.status = status
        framer = ResponseFramer(info.method, info.version, keep_alive, conn.version)
        # a field that cannot be sent raises here, before the head counts as started: the
        # handler's error then gets its 500 instead of a cut-off connection
        head = framer.head(status, headers.items(), end_stream, conn.host.date())
        self._framer = framer
        if end_stream:
            self._complete(head + framer.end())
            return
        # Hold the head briefly so that a body written in the same step leaves in one send().
        self._pending = head
        conn.loop.call_soon(self._flush)
        if conn._write_paused:
            await conn._wait_writable(timeout)

    async def write_chunk(
        self, data: bytes, end_stream: bool, timeout: float | None = None
    ) -> None:
        """Send body bytes; ``end_stream`` finishes the response.

        Raises:
            TypeError: ``data`` is not bytes-like.
            ValueError: more (or, at the end, fewer) bytes than the head's content-length.
            StreamStateError: no head written yet, or the response is complete.
            BrokenPipeError: the client is gone.
        """
        framer = self._framer
        if framer is None or self._response_done:
            raise StreamStateError("write_headers first" if framer is None else "response complete")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"body data must be bytes, not {type(data).__name__}")
        conn = self.connection
        if len(data) < COPY_LIMIT or framer.mode == NO_BODY:
            out = framer.data(data)
            self.bytes_sent += len(data)
            if self._pending:  # the held head goes out with its body: one send()
                out, self._pending = self._pending + out, b""
            if end_stream:
                self._complete(out + framer.end())
                return
            conn._write(out)
        else:  # large: no copy into the head or the chunk framing (writev on uvloop)
            prefix, suffix = framer.frame_size(len(data))
            self.bytes_sent += len(data)
            pieces = [self._pending, prefix, data, suffix]
            self._pending = b""
            if end_stream:
                pieces.append(framer.end())
                self._response_done = True
                conn._write(pieces)
                conn._response_complete(self, framer.keep_alive)
                return
            conn._write(pieces)
        if conn._write_paused:
            await conn._wait_writable(timeout)

    async def write_body_from_file(
        self, file: Any, count: int | None = None, timeout: float | None = None
    ) -> None:
        """Send ``file`` from its position (``count`` bytes or to its end) and finish.

        Regular files on a plain connection go out with ``sendfile(2)``: no copy through Python.
        """
        framer = self._framer
        if self.connection.tls is not None:  # no sendfile through a TLS layer
            await super().write_body_from_file(file, count, timeout)
            return
        try:
            offset = file.tell()
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):  # a pipe or /proc file has no usable size
                raise ValueError("not a regular file")
            size = info.st_size - offset
        except (AttributeError, OSError, ValueError):
            await super().write_body_from_file(file, count, timeout)
            return
        if framer is None or self._response_done:
            raise StreamStateError("write_headers first" if framer is None else "response complete")
        if count is None:
            count = size
        elif count > size:
            raise EOFError(f"file has {size} bytes left, count is {count}")
        prefix, suffix = framer.frame_size(count)
        self.bytes_sent += count
        conn = self.connection
        conn._write(self._pending + prefix)
        self._pending = b""
        async with within(timeout):
            if count and framer.mode != NO_BODY:
                await _send_file(conn, file, offset, count)
        file.seek(offset + count)
        self._complete(suffix + framer.end())

    def _flush(self) -> None:
        if self._pending and self.connection._state < CLOSED:
            self.connection._write(self._pending)
        self._pending = b""

    def _complete(self, data: bytes) -> None:
        self._response_done = True
        conn = self.connection
        conn._write(data)
        conn._response_complete(self, self._framer.keep_alive)  # type: ignore[union-attr]

    # -- ending -----------------------------------------------------------------------------------

    async def shutdown(self, timeout: float | None = None) -> None:
        """End the exchange: 503 if no response was written (the status of a request error,
        e.g. 400, when reading the request failed); an unfinished response is cut off by
        closing the connection, since its framing cannot be completed honestly."""
        self._end(503)

    def _end(self, status: int) -> None:
        conn = self.connection
        if self._response_done or conn._state >= CLOSED:
            return
        if self._framer is None:
            error = self._read_error
            if isinstance(error, ProtocolError):
                status = error.status
            elif isinstance(error, OSError):
                conn.close()
                return
            self._framer = ResponseFramer(b"GET", 1.1, False, conn.version)
            self.status = status
            self._pending = b""
            date = conn.host.date()
            self._complete(error_response(status, conn.version, date, self._info.method))
        else:
            self._flush()
            conn.close()


async def _send_file(conn: H1Connection, file: Any, offset: int, count: int) -> None:
    """``count`` bytes of ``file`` from ``offset`` with ``sendfile(2)`` (``loop.sendfile``).

    In pieces, each within ``write_timeout``: sendfile(2) waits for the socket on its own, so a
    client that stops reading would otherwise hold the connection for ever.
    """
    end = offset + count
    while offset < end:
        await conn._wait_writable(None)
        piece = min(SENDFILE_PIECE, end - offset)
        try:
            async with asyncio.timeout(finite(conn._options.write_timeout)):
                await conn.loop.sendfile(conn.transport, file, offset, piece)
        except NotImplementedError:  # uvloop has none: a copy, under pause_writing's deadline
            data = os.pread(file.fileno(), piece, offset)
            if len(data) < piece:
                raise EOFError("the file got shorter while it was sent") from None
            conn._write(data)
        except TimeoutError:
            conn.transport.abort()
            raise BrokenPipeError("the client read nothing for write_timeout") from None
        except ConnectionError as exc:  # asyncio's plain "Connection closed by peer"
            raise BrokenPipeError(str(exc)) from None
        offset += piece
