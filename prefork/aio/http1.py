"""One HTTP/1 connection on asyncio: bytes between the socket and the sans-I/O protocol.

:class:`H1Connection` is an ``asyncio.Protocol``: it feeds received bytes to
:class:`~prefork.protocol.http1.RequestParser`, turns each request into an :class:`H1Stream`
handed to the server (which runs ``onstream`` in a task), writes what the stream's
:class:`~prefork.protocol.http1.ResponseFramer` produces, and owns the connection's one
deadline: ``connection_setup_timeout`` until the first byte, ``intra_stream_timeout`` while
waiting for a request head, a short linger while closing. Handlers are not timed by the
connection; each stream method takes its own ``timeout``.

Back-pressure: a request body is buffered up to ``HIGH_WATER`` bytes per stream, then the
socket is no longer read until the handler consumes it; pipelined requests wait in the parser
(up to ``PIPELINE_LIMIT`` bytes) until the current response is complete; writers wait while
the transport's buffer is over its high-water mark.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import stat
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from prefork.errors import ProtocolError, StreamStateError
from prefork.headers import Headers
from prefork.protocol import http1
from prefork.stream import Stream

if TYPE_CHECKING:
    from prefork.server import Server

HIGH_WATER = 256 * 1024
PIPELINE_LIMIT = 64 * 1024
DRAIN_LIMIT = 256 * 1024
LINGER = 2.0

SETUP, OPEN, LINGERING, CLOSED, TAKEN = range(5)


def _error_response(status: int, version: float, date: str, method: bytes = b"GET") -> bytes:
    body = HTTPStatus(status).phrase.encode("ascii") + b"\n"
    framer = http1.ResponseFramer(method, 1.1, False, version)
    fields = [("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(body)))]
    head = framer.head(status, fields, True, date)
    return head if framer.mode == http1.NO_BODY else head + body


class H1Connection(asyncio.Protocol):
    """An HTTP/1 server connection (the stream's ``connection`` attribute).

    Attributes:
        version: the HTTP version this side speaks: 1.1, or 1.0 when the server pins it.
    """

    def __init__(self, server: Server, tls: Any = None) -> None:
        self.server = server
        self.loop = server._get_loop()
        self.tls = tls
        self.scheme = "http" if tls is None else "https"
        self.version: float = server._options.version or 1.1
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._parser = http1.RequestParser(server._limits)
        self._stream: H1Stream | None = None
        self._state = SETUP
        self._closing = False
        self._peer_eof = False
        self._reading = True
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<prefork.H1Connection peer={self.peername()!r} state={self._state}>"

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server._connection_made(self)
        self._arm(self.server._options.connection_setup_timeout)

    def data_received(self, data: bytes) -> None:
        if self._state != OPEN:
            if self._state != SETUP:
                return  # lingering: discard
            self._state = OPEN
            self._arm(self.server._options.intra_stream_timeout)
        self._parser.receive_data(data)
        self._pump()

    def eof_received(self) -> bool:
        if self._state in (LINGERING, SETUP):
            return False  # transport closes: lingering done, or a client that sent nothing
        self._peer_eof = True
        self._parser.receive_data(b"")
        self._pump()
        return True  # keep the write side open: a response may still be owed

    def connection_lost(self, exc: Exception | None) -> None:
        taken = self._state == TAKEN
        self._state = CLOSED
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stream = self._stream
        if stream is not None and not taken:
            stream._lost()
        self._wake_writers()
        self.server._connection_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    # -- reading ----------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Take events from the parser while the current stream can use them."""
        parser = self._parser
        try:
            while self._state == OPEN:
                stream = self._stream
                if stream is not None:
                    if stream._body_done:
                        if parser.pending > PIPELINE_LIMIT:
                            self._pause_reading()
                        return
                    if (
                        stream._buffered >= HIGH_WATER
                        and not stream._want_all
                        and not stream._discarding
                    ):
                        self._pause_reading()
                        return
                event = parser.next_event()
                kind = type(event)
                if kind is http1.Data:
                    stream._feed(event.data)  # type: ignore[union-attr]
                elif kind is http1.Request:
                    self._on_request(event)
                elif kind is http1.EndOfMessage:
                    stream._feed_end(event.headers)  # type: ignore[union-attr]
                    if stream._response_done:  # type: ignore[union-attr]
                        self._next_cycle()
                elif kind is http1.ConnectionClosed:
                    self.transport.close()
                    return
                else:  # NEED_DATA, PAUSED
                    return
        except ProtocolError as exc:
            self._on_protocol_error(exc)
        except Exception as exc:  # a bug of ours: drop this connection, report, keep serving
            self.transport.abort()
            self.server._report(self, "get_next_incoming_stream", exc)

    def _on_request(self, event: http1.Request) -> None:
        self._deadline = None  # the handler's time is its own
        info = http1.describe_request(event, self.scheme)
        stream = self._stream = H1Stream(self, info)
        self.server.add_stream(stream)

    def _on_protocol_error(self, exc: ProtocolError) -> None:
        stream = self._stream
        if stream is None:
            self._write(_error_response(exc.status, self.version, self.server._date()))
            self._close_after_response()
        elif stream._response_done:  # bad bytes while draining an unread body
            self.transport.close()
        elif self._peer_eof:
            stream._fail(ConnectionResetError("client closed the connection mid-request"))
        else:
            stream._fail(
                exc
            )  # the handler's next read raises; an unanswered request gets exc.status

    def _pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._reading and self._state in (OPEN, LINGERING):
            self._reading = True
            self.transport.resume_reading()

    # -- the request/response cycle ----------------------------------------------------------

    def _response_complete(self, stream: H1Stream, keep_alive: bool) -> None:
        # After the client's EOF, requests it pipelined before it are still answered: the next
        # cycle finds them, or ConnectionClosed.
        if not keep_alive or self._closing or stream._read_error is not None:
            self._close_after_response()
        elif stream._body_done:
            self._next_cycle()
            self._pump()
        else:
            # The handler answered without reading the whole body: read and drop the rest,
            # up to DRAIN_LIMIT within intra_stream_timeout, so the connection can be reused.
            stream._discarding = True
            stream._chunks.clear()
            stream._buffered = 0
            self._arm(self.server._options.intra_stream_timeout)
            self._resume_reading()
            self._pump()

    def _next_cycle(self) -> None:
        self._parser.start_next_cycle()
        self._stream = None
        if self._closing:
            self.transport.close()
            return
        self._arm(self.server._options.intra_stream_timeout)
        self._resume_reading()

    def _close_after_response(self) -> None:
        """Close, lingering when unread input could make the kernel reset the connection.

        Closing with unread bytes in the receive buffer sends RST, which can destroy the
        response still in flight (RFC 9112 section 9.6): shut the write side, then drain.
        """
        if self._state != OPEN:
            return
        stream = self._stream
        if self._peer_eof or (self._parser.pending == 0 and (stream is None or stream._body_done)):
            self.transport.close()
            return
        self._state = LINGERING
        self.transport.write_eof()
        self._arm(LINGER)
        if not self._reading:
            self._reading = True
            self.transport.resume_reading()

    def close_gracefully(self) -> None:
        """Finish the current response (with ``Connection: close``), then close."""
        self._closing = True
        if self._state in (SETUP, OPEN) and self._stream is None:
            self.transport.close()

    def close(self) -> None:
        """Close the connection now (buffered output is still flushed)."""
        if self._state < CLOSED:
            self.transport.close()

    # -- deadlines --------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        if math.isinf(seconds):
            self._deadline = None
            return
        deadline = self._deadline = self.loop.time() + seconds
        timer = self._timer
        if timer is not None and timer.when() > deadline:
            timer.cancel()
            timer = None
        if timer is None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        # One timer per connection, re-armed lazily: a keep-alive request only moves _deadline.
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._state >= CLOSED:
            return
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
        elif self._state == LINGERING:
            self.transport.abort()
        else:
            self.transport.close()  # idle, slow or silent client: closed without a word

    # -- writing ----------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        # is_closing() too: after a send error asyncio drops writes silently and reports the
        # loss only in a later callback, which a handler that never yields would not let run.
        if self._state >= CLOSED or self.transport.is_closing():
            raise BrokenPipeError("connection closed")
        if data:
            self.transport.write(data)

    async def _wait_writable(self, timeout: float | None) -> None:
        while self._write_paused and self._state < CLOSED:
            if self._drain is None:
                self._drain = self.loop.create_future()
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._drain)
        if self._state >= CLOSED or self.transport.is_closing():
            raise BrokenPipeError("connection closed")

    def _wake_writers(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    async def _sendfile(self, file: Any, offset: int, count: int) -> None:
        await self._wait_writable(None)
        await self.loop.sendfile(self.transport, file, offset, count)

    # -- lua-http connection methods -------------------------------------------------------------

    async def take_socket(self) -> tuple[socket.socket, bytes]:
        """Take the connection over (WebSocket, CONNECT tunnels, custom protocols).

        Flushes what was written, detaches the socket from the server and returns it
        (non-blocking, for ``loop.sock_recv``/``sock_sendall``) with the bytes that were
        already read past the current request head. The server forgets the connection.
        """
        if self._state >= CLOSED:
            raise BrokenPipeError("connection closed")
        if self.tls is not None:
            raise ValueError("take_socket() is not possible on a TLS connection")
        stream = self._stream
        if stream is not None:
            stream._flush()
        self.transport.set_write_buffer_limits(high=0)
        await self._wait_writable(None)
        data = b"".join(stream._chunks) if stream is not None else b""
        data += self._parser.take_trailing_data()
        raw = self.transport.get_extra_info("socket")
        sock = socket.socket(raw.family, raw.type, raw.proto, os.dup(raw.fileno()))
        sock.setblocking(False)
        self._state = TAKEN
        self.transport.abort()
        return sock, data

    def peername(self) -> tuple:
        """``(family, address, port)`` of the client, ``(AF_UNIX, path)`` on a Unix socket."""
        return _name(self.transport, "peername")

    def localname(self) -> tuple:
        """``(family, address, port)`` of this end, ``(AF_UNIX, path)`` on a Unix socket."""
        return _name(self.transport, "sockname")

    def checktls(self) -> Any:
        """The TLS connection (``OpenSSL.SSL.Connection``); None on a plain connection."""
        return self.tls


def _name(transport: asyncio.BaseTransport | None, which: str) -> tuple:
    if transport is None:
        return (socket.AF_UNSPEC,)
    raw = transport.get_extra_info("socket")
    name = transport.get_extra_info(which)
    if raw is None or name is None:
        return (socket.AF_UNSPEC,)
    if raw.family == socket.AF_UNIX:
        return (raw.family, os.fsdecode(name) if name else "")
    return (raw.family, name[0], name[1])


class H1Stream(Stream):
    """One request and its response on an HTTP/1 connection (the contract: docs/stream.md).

    Attributes:
        status: the final status written (None before the response head), for access logs.
        bytes_sent: response body bytes written so far.
    """

    def __init__(self, connection: H1Connection, info: http1.RequestInfo) -> None:
        super().__init__()
        self.connection = connection
        self.peer_version = info.version
        self._info = info
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._body_done = False
        self._trailers: Headers | None = None
        self._read_error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._headers_read = 0
        self._want_all = False
        self._discarding = False
        self._framer: http1.ResponseFramer | None = None
        self._pending = b""
        self._continue_sent = False
        self._response_done = False
        self._task: asyncio.Task[None] | None = None
        self.status: int | None = None
        self.bytes_sent = 0

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
        self._read_error = exc
        self._wake()

    def _lost(self) -> None:
        if not self._body_done and self._read_error is None:
            self._read_error = ConnectionResetError("client closed the connection")
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        waiter = self._waiter = self.connection.loop.create_future()
        try:
            if timeout is None:
                await waiter
            else:
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            self._waiter = None

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
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
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
        status = _status(headers)
        info = self._info
        if status < 200:
            # RFC 9110 section 15.2: no 1xx to an HTTP/1.0 client, none from a 1.0 server
            if self.peer_version >= 1.1 and conn.version == 1.1:
                if status == 100:
                    self._continue_sent = True
                interim = http1.ResponseFramer(info.method, info.version, True, conn.version)
                conn._write(interim.head(status, headers.items(), False, ""))
            await conn._wait_writable(timeout)
            return
        # A client that asked for 100-continue and did not get it may never send the body:
        # then the connection cannot be reused (RFC 9110 section 10.1.1).
        keep_alive = (
            info.keep_alive
            and not conn._closing
            and not (info.expects_continue and not self._continue_sent and not self._body_done)
        )
        self.status = status
        framer = self._framer = http1.ResponseFramer(
            info.method, info.version, keep_alive, conn.version
        )
        head = framer.head(status, headers.items(), end_stream, conn.server._date())
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
        out = framer.data(data)
        self.bytes_sent += len(data)
        if self._pending:
            out, self._pending = self._pending + out, b""
        if end_stream:
            self._complete(out + framer.end())
            return
        conn = self.connection
        conn._write(out)
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
        async with asyncio.timeout(timeout):
            if count and framer.mode != http1.NO_BODY:
                await conn._sendfile(file, offset, count)
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
            self._framer = http1.ResponseFramer(b"GET", 1.1, False, conn.version)
            self.status = status
            self._pending = b""
            date = conn.server._date()
            self._complete(_error_response(status, conn.version, date, self._info.method))
        else:
            self._flush()
            conn.close()


def _status(headers: Headers) -> int:
    value = headers.get(":status")
    if value is None:
        raise ValueError("response headers need a ':status'")
    if not (isinstance(value, str) and len(value) == 3 and value.isdigit()):
        raise ValueError(f"':status' must be a 3-digit string, got {value!r}")
    return int(value)
