"""The HTTP/2 stream: one request and its response on an :class:`~prefork.aio.http2.H2Connection`.

The same contract as :class:`~prefork.aio.h1stream.H1Stream` (docs/stream.md); what differs
is underneath. A stream is fed by its connection (``_feed``, ``_feed_trailers``,
``_feed_end``, ``_reset_by_peer``, ``_lost``); each body read returns the window it frees to
the client (RFC 9113 section 5.2), so a handler that does not read stops its own stream only;
``write_chunk`` waits for send window (RFC 9113 section 6.9). HTTP/1 framing questions do
not arise: DATA frames and END_STREAM delimit the body (RFC 9113 section 8.1).
"""

from __future__ import annotations

import asyncio
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING

import h2.exceptions
from h2.errors import ErrorCodes
from hpack import HeaderTuple

from prefork.aio.h2send import H2Sending
from prefork.errors import ProtocolError, StreamStateError
from prefork.headers import Headers
from prefork.protocol.h2fields import response_fields, response_head
from prefork.stream import Stream

if TYPE_CHECKING:
    from prefork.aio.http2 import H2Connection


class H2Stream(H2Sending, Stream):
    """One request and its response on an HTTP/2 connection (the contract: docs/stream.md).

    Attributes:
        stream_id: the HTTP/2 stream identifier.
        request_headers: the request headers (pseudo-headers first).
        tunnel: a WebSocket (RFC 8441) runs in it: DATA is no body, max_body_size is moot.
        status: the final status written (None before the response head), for access logs.
        bytes_sent: response body bytes written so far.
    """

    peer_version = 2.0
    # Starting values, set on the instance when they change: a stream is made per request.
    _unacked = 0  # body bytes read by the handler, window not returned yet
    _received = 0
    _trailers: Headers | None = None
    _read_error: BaseException | None = None
    request_headers_read = 0
    _want_all = False
    _head_sent = False
    _no_body = False
    _length_left: int | None = None
    _response_done = False
    _reset = False
    tunnel = False
    status: int | None = None
    bytes_sent = 0

    def __init__(
        self, connection: H2Connection, stream_id: int, headers: Headers, body_done: bool = False
    ) -> None:
        super().__init__()
        self.connection = connection
        self.stream_id = stream_id
        self.request_headers = headers
        self._head_request = headers.get(":method") == "HEAD"
        self._chunks: deque[bytes] = deque()
        self._body_done = body_done

    def __repr__(self) -> str:
        h = self.request_headers
        return f"<prefork.H2Stream {self.stream_id} {h.get(':method')} {h.get(':path')}>"

    # -- fed by the connection -------------------------------------------------------------------

    def _feed(self, data: bytes, flow_controlled: int) -> None:
        self._received += len(data)
        limit = self.connection.max_body_size
        if limit is not None and self._received > limit and not self.tunnel:
            # as on HTTP/1: reads raise, an unanswered request gets 413; the rest is dropped
            if self._read_error is None:
                self._read_error = ProtocolError("request body too large", 413)
            self.connection._ack(self.stream_id, flow_controlled)
            self._wake()
            return
        self._chunks.append(data)
        self._unacked += flow_controlled
        if self._want_all:  # the body is kept whole for the caller: no back-pressure
            self._ack()
        self._wake()

    def _feed_trailers(self, trailers: Headers) -> None:
        self._trailers = trailers

    def _malformed(self, reason: str) -> None:
        """Malformed trailers: the stream was reset (PROTOCOL_ERROR); reads raise 400."""
        self._reset = True
        if self._read_error is None:
            self._read_error = ProtocolError(reason, 400)
        self._disconnect()

    def _feed_end(self) -> None:
        self._body_done = True
        self._wake()

    def _reset_by_peer(self, code: int) -> None:
        self._reset = True
        if not self._body_done:
            self._read_error = ConnectionResetError(f"client reset the stream ({code})")
        self._disconnect()

    def _lost(self) -> None:
        self._reset = True
        if not self._body_done and self._read_error is None:
            self._read_error = ConnectionResetError("client closed the connection")
        self._disconnect()

    def _ack(self) -> None:
        if self._unacked:
            self.connection._ack(self.stream_id, self._unacked)
            self._unacked = 0

    # -- reading ----------------------------------------------------------------------------------

    async def get_headers(self, timeout: float | None = None) -> Headers | None:
        """Request headers on the first call; the trailers (None if none) once the body ended."""
        self.request_headers_read += 1
        if self.request_headers_read == 1:
            return self.request_headers
        if self.request_headers_read > 2:
            return None
        self._want_all = True  # the caller skips to the trailers: keep the body for later reads
        self._ack()
        while not self._body_done:
            if self._read_error is not None:
                raise self._read_error
            await self._wait(timeout)
        return self._trailers

    async def _read_chunk(self, timeout: float | None) -> bytes | None:
        chunks = self._chunks
        while not chunks:
            if self._read_error is not None:
                raise self._read_error
            if self._body_done:
                return None
            await self._wait(timeout)
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._ack()  # the handler took it: the client may send as much again
        return data

    # -- writing ----------------------------------------------------------------------------------

    async def write_continue(self, timeout: float | None = None) -> None:
        """Nothing to do: an HTTP/2 client sends its body without waiting for ``100``
        (RFC 9113 section 8.1 allows it; clients that wait give up after a short time)."""
        await self.connection._wait_writable(timeout)

    async def write_headers(
        self, headers: Headers, end_stream: bool, timeout: float | None = None
    ) -> None:
        """Send the response head; 1xx heads may come first; after the head, trailers.

        Raises:
            ValueError: missing or bad ``:status`` (``101`` has no place in HTTP/2, RFC 9113
                section 8.6), or a field that cannot be sent.
            StreamStateError: the response is already complete, or non-final trailers.
            BrokenPipeError: the stream was reset or the connection is closed.
        """
        if self._response_done:
            raise StreamStateError("the response is already complete")
        conn = self.connection
        if self._head_sent:
            if not end_stream:
                raise StreamStateError("headers after the response head are trailers: end_stream")
            if self._length_left:
                raise ValueError(f"body ended {self._length_left} bytes short of content-length")
            conn._send_headers(self, response_fields(headers), True)
            self._complete()
            return
        fields, status, length, dated = response_head(headers)
        if status < 200:
            if status == 101:
                raise ValueError("101 Switching Protocols does not exist in HTTP/2")
            conn._send_headers(self, fields, False)
            await conn._wait_writable(timeout)
            return
        if length is not None:
            if not length.isdigit():
                raise ValueError(f"bad content-length {length!r}")
            self._length_left = int(length)
        if not dated:
            fields.append((b"date", conn.host.date().encode("ascii")))
        # RFC 9110 sections 9.3.2, 15.3.5, 15.4.5: no body for HEAD, 204 and 304
        self._no_body = self._head_request or status in (204, 304)
        if self._no_body:
            self._length_left = None
        self.status = status
        self._head_sent = True
        conn._send_headers(self, fields, end_stream)
        if end_stream:
            self._complete()
        elif conn._write_paused:
            await conn._wait_writable(timeout)

    async def write_chunk(
        self, data: bytes, end_stream: bool, timeout: float | None = None
    ) -> None:
        """Send body bytes, waiting for flow-control window; ``end_stream`` finishes.

        Raises:
            TypeError: ``data`` is not bytes-like.
            ValueError: more (or, at the end, fewer) bytes than the head's content-length.
            StreamStateError: no head written yet, or the response is complete.
            BrokenPipeError: the stream was reset or the connection is closed.
            TimeoutError: no window opened within ``timeout``.
        """
        if not self._head_sent or self._response_done:
            raise StreamStateError("write_headers first" if not self._head_sent else "complete")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"body data must be bytes, not {type(data).__name__}")
        size = len(data)
        left = self._length_left
        if left is not None:
            if size > left or (end_stream and size != left):
                raise ValueError(f"content-length is {left} more bytes, got {size}")
            self._length_left = left - size
        self.bytes_sent += size
        if self._no_body:
            data = b""
        if self._send_fitting(data, end_stream):  # most writes: nothing to wait for
            if end_stream:
                self._complete()
            elif self.connection._write_paused:
                await self.connection._wait_writable(timeout)
            return
        if timeout is None:  # no Timeout object on the hot path (it showed in profiles)
            await self._write_body(data, end_stream)
        else:
            async with asyncio.timeout(timeout):
                await self._write_body(data, end_stream)

    def _complete(self) -> None:
        self._response_done = True
        conn = self.connection
        if not self._body_done:  # the request is still coming: what is left is discarded
            self._body_done = True
            conn._discard_rest(self.stream_id)
        conn._stream_done(self)

    # -- HTTP/2 only -------------------------------------------------------------------------------

    async def push_promise(self, headers: Headers, timeout: float | None = None) -> H2Stream:
        """Promise a response to the request ``headers`` (RFC 9113 section 8.4).

        Returns:
            The pushed stream: write its response with ``write_headers``/``write_chunk``.

        Raises:
            StreamStateError: the client disabled push (``SETTINGS_ENABLE_PUSH`` 0) or sent
                GOAWAY, or this stream's response is complete.
        """
        if self._response_done or self._reset:
            raise StreamStateError("cannot push on a finished stream")
        conn = self.connection
        conn._check(self)
        h2c = conn.h2
        if not h2c.remote_settings.enable_push:
            raise StreamStateError("the client disabled server push (SETTINGS_ENABLE_PUSH 0)")
        if conn._peer_goaway:  # RFC 9113 section 6.8: no new streams after the client's GOAWAY
            raise StreamStateError("the client sent GOAWAY: no new streams")
        promised = h2c.get_next_available_stream_id()
        pseudo = [
            HeaderTuple(n.encode("latin-1"), v.encode("latin-1"))
            for n, v, _ in headers.each()
            if n[0] == ":"
        ]
        try:
            h2c.push_stream(self.stream_id, promised, pseudo + response_fields(headers))
        except h2.exceptions.ProtocolError as exc:
            raise conn._h2_error(exc) from None
        pushed = H2Stream(conn, promised, headers, body_done=True)
        conn._streams[promised] = pushed
        conn._flush_soon()
        return pushed

    def rst_stream(self, code: int = ErrorCodes.CANCEL) -> None:
        """Reset the stream with ``code`` (RFC 9113 section 6.4); it cannot be used again."""
        if self._reset:
            return
        self._body_done = True
        self.connection._reset_stream(self, code)
        self.connection._stream_done(self)

    # -- ending -----------------------------------------------------------------------------------

    async def shutdown(self, timeout: float | None = None) -> None:
        """End the exchange: 503 if no response was written (a request error's status when
        reading failed); an unfinished response is cut off with RST_STREAM(INTERNAL_ERROR)."""
        self._end(503)

    def _end(self, status: int) -> None:
        if self._response_done or self._reset:
            conn = self.connection
            if conn._streams.get(self.stream_id) is self:  # (most are forgotten already)
                conn._stream_done(self)  # the handler is gone: forget the stream
            return
        if self._head_sent:
            self.rst_stream(ErrorCodes.INTERNAL_ERROR)
            return
        error = self._read_error
        if isinstance(error, ProtocolError):
            status = error.status
        elif isinstance(error, OSError):
            self.rst_stream(ErrorCodes.CANCEL)
            return
        body = HTTPStatus(status).phrase.encode("ascii") + b"\n"
        fields = [
            HeaderTuple(b":status", str(status).encode("ascii")),
            HeaderTuple(b"content-type", b"text/plain; charset=utf-8"),
            HeaderTuple(b"content-length", str(len(body)).encode("ascii")),
            HeaderTuple(b"date", self.connection.host.date().encode("ascii")),
        ]
        self.status = status
        self._head_sent = True
        try:
            self._send_now(fields, b"" if self._head_request else body)
        except BrokenPipeError:
            return
        self._complete()
