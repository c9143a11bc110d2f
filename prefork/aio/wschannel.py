"""The asyncio side of one WebSocket: bytes between a transport and the sans-I/O protocol.

:class:`WebSocketChannel` is the ``asyncio.Protocol`` that :class:`prefork.websocket.WebSocket`
gives the connection to: the HTTP/1.1 connection's transport (plain or TLS, taken over) or an
:class:`~prefork.aio.h2tunnel.H2Tunnel` over one HTTP/2 stream. It feeds what arrives to
:class:`~prefork.protocol.websocket.WebSocketProtocol`, writes what that queues (Pongs and
Close answers at once, even while the handler is busy) before acting on its events, holds
whole messages for ``receive()``, settles ``ping()``'s futures, applies back-pressure both ways
and owns the timers: the keep-alive Pings and the one closing deadline. docs/websocket.md has
the rules.
"""

from __future__ import annotations

import asyncio
from collections import deque

from prefork.protocol.websocket import (
    BrokenAfterClose,
    Closed,
    Failed,
    Message,
    Pong,
    WebSocketEvent,
    WebSocketProtocol,
)

QUEUE_LIMIT = 16  # whole messages held unread before the connection stops being read
KEEPALIVE = b"keepalive"  # the keep-alive Ping's payload: one is out at a time


class WebSocketChannel(asyncio.Protocol):
    """Moves bytes between the connection and the protocol; every way of ending ends in
    ``lost``."""

    def __init__(
        self,
        ws: WebSocketProtocol,
        close_timeout: float,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
    ) -> None:
        self.ws = ws
        self.close_timeout = close_timeout
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.messages: deque[str | bytes] = deque()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.pings: dict[bytes, asyncio.Future[bool]] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[bool] | None = None  # set while the write buffer is full
        self._full = False  # QUEUE_LIMIT messages unread, until the handler reads half of them
        self._timer: asyncio.TimerHandle | None = None  # the closing deadline
        self._keepalive: asyncio.TimerHandle | None = None  # the next Ping, or its Pong's deadline
        self._pinged: float | None = None  # when the keep-alive Ping awaiting its Pong left

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.ping_interval is not None:
            self._keepalive = self.loop.call_later(self.ping_interval, self._keepalive_ping)

    def data_received(self, data: bytes) -> None:
        self._handle(self.ws.receive_data(data))

    def eof_received(self) -> bool:
        self._handle(self.ws.receive_data(None))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._timer, self._keepalive):
            if timer is not None:
                timer.cancel()
        self.ws.connection_lost()
        self._wake()
        for future in (self._drain, *self.pings.values()):
            if future is not None and not future.done():
                future.set_result(False)
        self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._drain = self.loop.create_future()
        self._gate()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(True)
        self._drain = None
        self._gate()

    def _gate(self) -> None:
        """Read the peer only while it cannot make us buffer without bound: the handler keeps
        up (``_full``) and our replies, Pongs included, leave (the transport's buffer is under
        its high-water mark). Once closing no reply is made: read on, for the peer's end."""
        if self.transport.is_closing():
            return
        if self.ws.closed is None and (self._full or self._drain is not None):
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def _handle(self, events: list[WebSocketEvent]) -> None:
        self._write(self.ws.data_to_send())  # Pongs, Close answers: before closing anything
        for event in events:
            if isinstance(event, Message):
                self.messages.append(event.data)
                self._wake()
                if len(self.messages) >= QUEUE_LIMIT:  # the handler reads too slowly
                    self._full = True
                    self._gate()
            elif isinstance(event, Pong):
                if KEEPALIVE in event.answered:
                    self._keepalive_answered()
                for payload in event.answered:
                    future = self.pings.pop(payload, None)
                    if future is not None and not future.done():
                        future.set_result(True)
            elif isinstance(event, Failed):  # a broken frame or 1009: input is dropped now
                self._wake()
                self._gate()  # a full queue must not hide the peer's end
                self._arm()
                self.transport.write_eof()
            elif isinstance(event, Closed):
                self._wake()
                self.transport.close()  # RFC 6455 section 7.1.1: the server closes TCP first
                self._arm()
            elif isinstance(event, BrokenAfterClose):
                self.transport.abort()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _write(self, data: bytes) -> None:
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def _arm(self) -> None:
        # One deadline for the whole closing phase: the peer's Close, then the flush.
        if self._keepalive is not None:  # closing: no more keep-alive
            self._keepalive.cancel()
            self._keepalive = None
        if self._timer is None and not self.lost.done():
            self._timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    # -- keep-alive (RFC 6455 section 5.5.2; websockets' and uvicorn's ping_interval/timeout) --

    def _keepalive_ping(self) -> None:
        """``ping_interval`` after the last one (or after its Pong): a Ping, whose Pong is due
        within ``ping_timeout``."""
        interval, timeout = self.ping_interval, self.ping_timeout
        if interval is None or self.ws.closed is not None or self.transport.is_closing():
            return
        self.ws.send_ping(KEEPALIVE)
        self._write(self.ws.data_to_send())  # a few bytes, even into a full buffer
        if timeout is None:
            self._keepalive = self.loop.call_later(interval, self._keepalive_ping)
        else:
            self._pinged = self.loop.time()
            self._keepalive = self.loop.call_later(timeout, self._pong_overdue)

    def _keepalive_answered(self) -> None:
        if self._pinged is None or self._keepalive is None or self.ping_interval is None:
            return  # not awaited (no ping_timeout), or closing
        self._keepalive.cancel()
        next_ping = self._pinged + self.ping_interval
        self._pinged = None
        self._keepalive = self.loop.call_at(next_ping, self._keepalive_ping)

    def _pong_overdue(self) -> None:
        if self._full and self.ping_timeout is not None:  # the Pong may wait behind messages
            # the handler has not read, which is not the peer's fault: the deadline starts again
            self._keepalive = self.loop.call_later(self.ping_timeout, self._pong_overdue)
            return
        # The peer is gone or stuck: 1011 (section 7.4.1), as websockets says it, and the
        # connection closes without waiting for an answer (the closing deadline bounds the flush).
        if self.ws.close(1011, "keepalive ping timeout"):
            self._write(self.ws.data_to_send())
        self._wake()
        self.transport.close()
        self._arm()

    def start_close(self, code: int, reason: str) -> None:
        """Send our Close (section 5.5.1); the peer's answer, EOF or the deadline ends it."""
        if self.ws.close(code, reason):
            self._write(self.ws.data_to_send())
            self._gate()  # a full queue must not hide the peer's Close
        self._wake()
        self._arm()

    def abandon(self) -> None:
        if not self.lost.done():
            self.transport.abort()

    async def next_message(self) -> str | bytes:
        while not self.messages:
            if self.ws.closed is not None:
                raise self.ws.error()
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._full and len(self.messages) <= QUEUE_LIMIT // 2:
            self._full = False
            self._gate()
        return self.messages.popleft()

    async def send(self, data: str | bytes) -> None:
        self.ws.send_message(data)
        await self._flush()

    async def ping(self, payload: bytes) -> asyncio.Future[bool]:
        """Send a Ping; the future is True once answered, False if the connection ends."""
        pong = self.pings.get(payload)
        if pong is None:  # one future per payload: concurrent equal pings share the Pong
            pong = self.pings[payload] = self.loop.create_future()
        self.ws.send_ping(payload)
        await self._flush()
        return pong

    async def _flush(self) -> None:
        self._write(self.ws.data_to_send())
        while self._drain is not None:  # back-pressure: the transport's buffer is full
            if not await asyncio.shield(self._drain):
                raise self.ws.error()
