"""Sending an HTTP/2 stream's body within the flow-control windows (RFC 9113 section 6.9).

:class:`H2Sending` is the sending half of :class:`~prefork.aio.h2stream.H2Stream` (a mixin):
a write that fits the stream's and the connection's send windows and one frame goes to h2
at once (:meth:`H2Sending._send_fitting`, the common case, with no coroutine below the
handler's); a larger one is cut into frames as the windows allow, waiting for WINDOW_UPDATE
in between, up to ``write_timeout`` without one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import h2.exceptions
from h2.errors import ErrorCodes
from hpack import HeaderTuple

from prefork.aio.common import finite

if TYPE_CHECKING:
    from prefork.aio.http2 import H2Connection


class H2Sending:
    """Body frames within the windows, for :class:`~prefork.aio.h2stream.H2Stream`."""

    # provided by H2Stream
    connection: H2Connection
    stream_id: int
    _reset: bool

    if TYPE_CHECKING:  # provided by H2Stream, as the attributes above

        def _complete(self) -> None: ...

        def rst_stream(self, code: int = ErrorCodes.CANCEL) -> None: ...

    def _send_fitting(self, data: Any, end_stream: bool) -> bool:
        """Send ``data`` in one DATA frame if the send windows and the frame size allow;
        False: they do not, and nothing was sent (h2 checks both before it changes state)."""
        conn = self.connection
        conn._check(self)
        if not data and not end_stream:
            return True  # no empty DATA frame (RFC 9113 section 10.5: they cost the peer)
        try:
            conn.h2.send_data(self.stream_id, data, end_stream=end_stream)
        except (h2.exceptions.FlowControlError, h2.exceptions.FrameTooLargeError):
            return False
        except h2.exceptions.ProtocolError as exc:
            raise conn._h2_error(exc) from None
        conn._flush_soon()
        return True

    async def _write_body(self, data: Any, end_stream: bool) -> None:
        await self._send_data(data, end_stream)
        if end_stream:
            self._complete()
        elif self.connection._write_paused:
            await self.connection._wait_writable(None)

    async def _send_data(self, data: Any, end_stream: bool) -> None:
        """Send ``data`` in frames as the send windows allow (RFC 9113 section 6.9)."""
        view = memoryview(data)
        sid = self.stream_id
        conn = self.connection
        h2c = conn.h2
        while True:
            conn._check(self)
            size = len(view)
            if not size and not end_stream:
                return
            try:
                window = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size)
                if size and window <= 0:
                    await self._wait_window()
                    continue
                n = min(window, size)
                last = n == size
                h2c.send_data(sid, bytes(view[:n]), end_stream=end_stream and last)
            except h2.exceptions.ProtocolError as exc:
                raise conn._h2_error(exc) from None
            if last:
                conn._flush_soon()
                return
            view = view[n:]

    async def _wait_window(self) -> None:
        conn = self.connection
        conn._flush()  # what fits must leave before waiting: it is what opens the window
        waiter = conn._windows[self.stream_id] = conn.loop.create_future()
        try:
            async with asyncio.timeout(finite(conn._options.write_timeout)):
                await waiter
        except TimeoutError:
            # write_timeout: the client opened no window; the others on the connection live on
            self.rst_stream(ErrorCodes.CANCEL)
            raise BrokenPipeError("the client opened no window for write_timeout") from None
        finally:
            conn._windows.pop(self.stream_id, None)

    def _send_now(self, fields: list[Any], body: bytes) -> None:
        """A whole small response at once (no waiting: ``_end`` is not a coroutine)."""
        conn = self.connection
        conn._check(self)
        h2c, sid = conn.h2, self.stream_id
        try:
            if body and h2c.local_flow_control_window(sid) < len(body):
                fields[2] = HeaderTuple(b"content-length", b"0")  # no window: no body
                body = b""
            h2c.send_headers(sid, fields, end_stream=not body)
            if body:
                h2c.send_data(sid, body, end_stream=True)
        except h2.exceptions.ProtocolError as exc:
            raise BrokenPipeError(str(exc)) from None
        conn._flush_soon()
