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
import os
import socket
from typing import Any

from prefork.aio.common import (
    CLOSED,
    LINGERING,
    OPEN,
    SETUP,
    TAKEN,
    error_response,
    finite,
    transport_name,
)
from prefork.aio.deadline import Deadline
from prefork.aio.h1stream import H1Stream
from prefork.aio.host import ConnectionHost
from prefork.aio.http2 import upgrade_h2c
from prefork.errors import ProtocolError
from prefork.protocol import http1

HIGH_WATER = 256 * 1024
SENDFILE_PIECE = 256 * 1024  # a client slower than this per write_timeout is cut off
PIPELINE_LIMIT = 64 * 1024
LINGER = 2.0


class H1Connection(asyncio.Protocol):
    """An HTTP/1 server connection (the stream's ``connection`` attribute).

    Attributes:
        version: the HTTP version this side speaks: 1.1, or 1.0 when the server pins it.
    """

    def __init__(self, host: ConnectionHost, tls: Any = None) -> None:
        self.host = host
        self.loop = host.loop
        self.tls = tls
        self.scheme = "http" if tls is None else "https"
        self._options = options = host.options
        self.version: float = options.version or 1.1
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._parser = http1.RequestParser(host.limits)
        self._stream: H1Stream | None = None
        self._state = SETUP
        self._closing = False
        self._peer_eof = False
        self._reading = True
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._write_deadline: Deadline | None = None  # made the first time writing pauses
        self._deadline = Deadline(self.loop, self._timed_out)

    @property
    def max_buffered_body(self) -> int:
        """The server's ``max_buffered_body`` (for the stream's whole-body reads)."""
        return self._options.max_buffered_body

    def __repr__(self) -> str:
        return f"<prefork.H1Connection peer={self.peername()!r} state={self._state}>"

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.tls is not None:  # the handshake was the set-up: now waiting for a request
            self._state = OPEN
            self._deadline.arm(self._options.intra_stream_timeout)
        else:
            self._deadline.arm(self._options.connection_setup_timeout)
        # last: a server already closing calls close_gracefully(), whose grace must stand
        self.host.connection_made(self)

    def data_received(self, data: bytes) -> None:
        if self._state != OPEN:
            if self._state != SETUP:
                return  # lingering: discard
            self._state = OPEN
            self._deadline.arm(self._options.intra_stream_timeout)
        self._parser.receive_data(data)
        self._pump()

    def eof_received(self) -> bool:
        if self._state in (LINGERING, SETUP):
            return False  # transport closes: lingering done, or a client that sent nothing
        self._peer_eof = True
        self._parser.receive_data(b"")
        self._pump()
        if self._stream is not None:  # the client will send nothing more: for the app, gone
            self._stream._peer_closed()
        return True  # keep the write side open: a response may still be owed

    def connection_lost(self, exc: Exception | None) -> None:
        taken = self._state == TAKEN
        self._state = CLOSED
        self._deadline.cancel()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
        stream = self._stream
        if stream is not None and not taken:
            stream._lost()
        self._wake_writers()
        self.host.connection_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        # write_timeout: a client that reads nothing while our buffer is full is cut off
        if self._write_deadline is None:
            # the client read nothing while responses waited: gone in all but name; abort
            # (connection_lost wakes every writer with BrokenPipeError)
            self._write_deadline = Deadline(self.loop, self.transport.abort)
        self._write_deadline.arm(self._options.write_timeout)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._write_deadline is not None:
            self._write_deadline.clear()
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
            self.host.report(self, "get_next_incoming_stream", exc)

    def _on_request(self, event: http1.Request) -> None:
        self._deadline.clear()  # the handler's time is its own
        info = http1.describe_request(event, self.scheme)
        if info.headers.has("http2-settings") and upgrade_h2c(self, info):
            return  # Upgrade: h2c, RFC 7540 section 3.2: now HTTP/2, the request is stream 1
        stream = self._stream = H1Stream(self, info)
        self.host.add_stream(stream)

    def _on_protocol_error(self, exc: ProtocolError) -> None:
        stream = self._stream
        if stream is None:
            self._write(error_response(exc.status, self.version, self.host.date()))
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
            self._deadline.arm(self._options.intra_stream_timeout)
            self._resume_reading()
            self._pump()

    def _next_cycle(self) -> None:
        self._parser.start_next_cycle()
        self._stream = None
        if self._closing:
            self.transport.close()
            return
        self._deadline.arm(self._options.intra_stream_timeout)
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
        self._deadline.arm(LINGER)
        if not self._reading:
            self._reading = True
            self.transport.resume_reading()

    def close_gracefully(self) -> None:
        """Finish the current response (with ``Connection: close``), then close.

        An idle keep-alive connection closes at once; one whose next request is arriving
        gets that request served. A connection with no bytes yet gets a short grace (at
        most 1 s) for its first request: a worker that retires right after the master
        handed it a connection must still serve it, and its request may still be in flight.
        """
        self._closing = True
        if self._state == SETUP:
            self._deadline.arm(min(1.0, self._options.connection_setup_timeout))
        elif self._state == OPEN and self._stream is None and not self._parser.pending:
            self.transport.close()

    def close(self) -> None:
        """Close the connection now (buffered output is still flushed)."""
        if self._state < CLOSED:
            self.transport.close()

    # -- deadlines --------------------------------------------------------------------------------

    def _timed_out(self) -> None:
        if self._state >= CLOSED:
            return
        if self._state == LINGERING:
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
        # In pieces, each within write_timeout: sendfile(2) waits for the socket on its own,
        # so a client that stops reading would otherwise hold the connection for ever.
        end = offset + count
        while offset < end:
            await self._wait_writable(None)
            piece = min(SENDFILE_PIECE, end - offset)
            try:
                async with asyncio.timeout(finite(self._options.write_timeout)):
                    await self.loop.sendfile(self.transport, file, offset, piece)
            except TimeoutError:
                self.transport.abort()
                raise BrokenPipeError("the client read nothing for write_timeout") from None
            except ConnectionError as exc:  # asyncio's plain "Connection closed by peer"
                raise BrokenPipeError(str(exc)) from None
            offset += piece

    # -- lua-http connection methods -------------------------------------------------------------

    async def take_socket(self) -> tuple[socket.socket, bytes]:
        """Take the connection over (WebSocket, CONNECT tunnels, custom protocols).

        Flushes what was written, detaches the socket from the server and returns it
        (non-blocking, for ``loop.sock_recv``/``sock_sendall``) with the bytes that were
        already read past the current request head. The server forgets the connection.
        """
        if self.tls is not None:
            raise ValueError("take_socket() is not possible on a TLS connection: take_transport")
        data = await self._detach()
        raw = self.transport.get_extra_info("socket")
        sock = socket.socket(raw.family, raw.type, raw.proto, os.dup(raw.fileno()))
        sock.setblocking(False)
        self.transport.abort()
        return sock, data

    async def take_transport(self, protocol: asyncio.Protocol) -> bytes:
        """Give the connection, plain or TLS, to another ``asyncio.Protocol``.

        Flushes what was written, then ``protocol`` gets ``connection_made(transport)`` and
        every byte from then on; the bytes already read past the request head are returned
        for it to process first. The server forgets the connection (a worker reports it
        done); closing the transport is the new protocol's business.
        """
        data = await self._detach()
        transport = self.transport
        self._deadline.cancel()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
        self.host.connection_lost(self)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if not self._reading:
            self._reading = True
            transport.resume_reading()
        return data

    async def _detach(self) -> bytes:
        """Flush the output, stop serving HTTP on the connection, return unparsed input."""
        if self._state >= CLOSED:
            raise BrokenPipeError("connection closed")
        stream = self._stream
        if stream is not None:
            stream._flush()
        self.transport.set_write_buffer_limits(high=0)
        await self._wait_writable(None)
        self.transport.set_write_buffer_limits()  # back to the defaults for the new owner
        data = b"".join(stream._chunks) if stream is not None else b""
        self._state = TAKEN
        return data + self._parser.take_trailing_data()

    def peername(self) -> tuple:
        """``(family, address, port)`` of the client, ``(AF_UNIX, path)`` on a Unix socket."""
        return transport_name(self.transport, "peername")

    def localname(self) -> tuple:
        """``(family, address, port)`` of this end, ``(AF_UNIX, path)`` on a Unix socket."""
        return transport_name(self.transport, "sockname")

    def checktls(self) -> Any:
        """The TLS connection (``OpenSSL.SSL.Connection``); None on a plain connection."""
        return self.tls
