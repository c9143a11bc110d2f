"""A transport over one HTTP/2 stream's DATA frames, for WebSocket over HTTP/2 (RFC 8441).

After the ``:status 200`` answering an extended CONNECT, the stream is a byte pipe both ways
(RFC 8441 section 5). :class:`H2Tunnel` gives an ``asyncio.Protocol`` (the WebSocket's
channel) the transport it expects: ``write`` queues bytes that one writer task sends in order
with the stream's ``write_chunk`` (which waits for flow-control window), with
``pause_writing``/``resume_writing`` on the protocol around a high-water mark; one reader task
feeds ``get_next_chunk`` to ``data_received`` until the client ends the stream
(``eof_received``). ``close`` ends our side after what is queued (END_STREAM), ``abort``
resets the stream (RST_STREAM CANCEL); either way ``connection_lost`` follows once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from h2.errors import ErrorCodes

HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024


class H2Tunnel(asyncio.Transport):
    """An ``asyncio.Transport`` over an :class:`~prefork.aio.h2stream.H2Stream`."""

    def __init__(self, stream: Any, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._stream = stream
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._buffer: list[bytes] = []
        self._size = 0
        self._paused = False  # the protocol was told to pause writing
        self._closing = False
        self._eof = False  # write_eof/close: END_STREAM once the buffer is sent
        self._lost = False
        self._has_data = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._tasks: list[asyncio.Task[None]] = []
        stream.tunnel = True

    def start(self) -> None:
        """Tell the protocol (``connection_made``) and start moving bytes."""
        self._protocol.connection_made(self)
        self._tasks = [
            self._loop.create_task(self._read(), name=f"h2tunnel-read-{self._stream.stream_id}"),
            self._loop.create_task(self._write(), name=f"h2tunnel-write-{self._stream.stream_id}"),
        ]

    # -- reading -----------------------------------------------------------------------------

    async def _read(self) -> None:
        stream = self._stream
        try:
            while True:
                await self._reading.wait()
                data = await stream.get_next_chunk()
                if data is None:
                    break
                if data and not self._closing:  # as a closed socket: nothing after close()
                    self._protocol.data_received(data)
        except Exception as exc:  # the client reset the stream or the connection went
            self._lose(exc, reset=False)
            return
        if self._lost:
            return
        if not self._protocol.eof_received():
            self.close()

    def pause_reading(self) -> None:
        self._reading.clear()  # unread DATA is not acknowledged: the client's window closes

    def resume_reading(self) -> None:
        self._reading.set()

    def is_reading(self) -> bool:
        return self._reading.is_set() and not self._lost

    # -- writing -----------------------------------------------------------------------------

    def write(self, data: Any) -> None:
        if self._eof or self._lost or not data:
            return
        self._buffer.append(bytes(data))
        self._size += len(data)
        self._has_data.set()
        if not self._paused and self._size > HIGH_WATER:
            self._paused = True
            self._protocol.pause_writing()

    async def _write(self) -> None:
        stream = self._stream
        try:
            while True:
                await self._has_data.wait()
                self._has_data.clear()
                if self._buffer:
                    data = b"".join(self._buffer)
                    self._buffer.clear()
                    await stream.write_chunk(data, False)
                    self._size -= len(data)
                    if self._paused and self._size <= LOW_WATER:
                        self._paused = False
                        self._protocol.resume_writing()
                if self._eof and not self._buffer:
                    await stream.write_chunk(b"", True)  # END_STREAM (RFC 8441 section 5)
                    break
        except Exception as exc:  # reset, connection gone, or the stream ended elsewhere
            self._lose(exc, reset=False)
            return
        if self._closing:
            self._lose(None, reset=False)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """End our side of the stream once what is queued is sent; reading goes on."""
        if not self._eof:
            self._eof = True
            self._has_data.set()

    def get_write_buffer_size(self) -> int:
        return self._size

    # -- ending ------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Send what is queued, end the stream, then ``connection_lost(None)``."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._reading.clear()  # as a closed socket: nothing more is delivered
        if self._tasks and self._tasks[1].done():  # the stream is already ended
            self._lose(None, reset=False)
        else:
            self.write_eof()

    def abort(self) -> None:
        """Reset the stream (RST_STREAM CANCEL) and drop what is queued."""
        self._lose(None, reset=True)

    def _lose(self, exc: Exception | None, reset: bool) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._buffer.clear()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if reset or not self._stream._response_done:
            with contextlib.suppress(Exception):
                self._stream.rst_stream(ErrorCodes.CANCEL)
        self._loop.call_soon(self._protocol.connection_lost, exc)  # as asyncio does

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._stream.peername()
        if name == "sockname":
            return self._stream.localname()
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]
