"""WebSocket (RFC 6455) for ``onstream`` handlers.

The protocol is sans-I/O in :mod:`prefork.protocol.websocket` (the handshake checks, the
accepting head, wsproto's framing); this module moves its bytes. :func:`new_from_stream` checks
the handshake, which arrives as a prefork stream with its head parsed, and answers a bad one;
:meth:`WebSocket.accept` writes the accepting head and gives the connection to
:class:`_Channel`, one small ``asyncio.Protocol`` that feeds the protocol and writes what it
queues (Pongs and Close answers at once, even while the handler is busy), applies
back-pressure both ways and owns the one closing deadline. Over HTTP/1.1 (plain or TLS) the
transport is taken over from the HTTP connection; over HTTP/2 an extended CONNECT (RFC 8441)
is answered ``200`` and the frames travel in the stream's DATA frames (an ``H2Tunnel``), chosen
by ``stream.connection.version``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from prefork.aio.h2tunnel import H2Tunnel
from prefork.errors import StreamStateError
from prefork.headers import Headers
from prefork.protocol.websocket import (
    MAX_MESSAGE_SIZE,
    BrokenAfterClose,
    Closed,
    ConnectionClosed,
    Failed,
    HandshakeError,
    Message,
    Pong,
    WebSocketEvent,
    WebSocketProtocol,
    check_close,
    check_connect,
    check_ping,
    check_request,
    negotiate,
    refusal,
)

__all__ = [
    "ConnectionClosed",
    "HandshakeError",
    "WebSocket",
    "check_connect",
    "check_request",
    "new_from_stream",
]

CLOSE_TIMEOUT = 10.0  # default wait for the peer's Close, then for the last bytes to leave
QUEUE_LIMIT = 16  # whole messages held unread before the connection stops being read


# -- the opening handshake ----------------------------------------------------------------------


async def new_from_stream(
    stream: Any,
    headers: Headers,
    *,
    max_message_size: int = MAX_MESSAGE_SIZE,
    close_timeout: float = CLOSE_TIMEOUT,
    compression: bool = True,
) -> WebSocket:
    """Check a WebSocket handshake request, to be ``accept()``-ed next (nothing is written).

    Args:
        stream: the stream the request came on; ``headers``: its request headers.
        max_message_size: largest message received; a larger one closes with 1009.
        close_timeout: seconds to wait for the peer's Close, then for the last bytes to leave.
        compression: whether to accept permessage-deflate (RFC 7692) when the client offers it.

    Raises:
        HandshakeError: not a valid handshake; the 400 (426 for a wrong version) is sent.
    """
    if max_message_size < 1 or close_timeout < 0:
        raise ValueError("max_message_size must be >= 1 and close_timeout >= 0")
    version = stream.connection.version
    key: str | None = None  # HTTP/2 has no Sec-WebSocket-Key (RFC 8441 section 5)
    try:
        if version >= 2:  # RFC 8441: extended CONNECT with :protocol websocket
            check_connect(headers)
        else:
            key = check_request(headers, min(stream.peer_version, version))
    except HandshakeError as exc:
        res, body = refusal(exc, http2=version >= 2)
        with contextlib.suppress(OSError):  # a client that left needs no answer
            await stream.write_headers(res, False)
            await stream.write_chunk(body, True)
        raise
    options = (max_message_size, close_timeout, compression)
    return WebSocket(stream, headers, key, options)


# -- the connection -------------------------------------------------------------------------------


class _Channel(asyncio.Protocol):
    """Moves bytes between the connection and the protocol; every way of ending ends in
    ``lost``."""

    def __init__(self, ws: WebSocketProtocol, close_timeout: float) -> None:
        self.ws = ws
        self.close_timeout = close_timeout
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.messages: deque[str | bytes] = deque()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.pings: dict[bytes, asyncio.Future[bool]] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._handle(self.ws.receive_data(data))

    def eof_received(self) -> bool:
        self._handle(self.ws.receive_data(None))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.ws.connection_lost()
        self._wake()
        for future in (self._drain, *self.pings.values()):
            if future is not None and not future.done():
                future.set_result(False)
        self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(True)
        self._drain = None

    def _handle(self, events: list[WebSocketEvent]) -> None:
        self._write(self.ws.data_to_send())  # Pongs, Close answers: before closing anything
        for event in events:
            if isinstance(event, Message):
                self.messages.append(event.data)
                self._wake()
                if len(self.messages) >= QUEUE_LIMIT:
                    self.transport.pause_reading()  # back-pressure: the handler reads too slowly
            elif isinstance(event, Pong):
                for payload in event.answered:
                    future = self.pings.pop(payload, None)
                    if future is not None and not future.done():
                        future.set_result(True)
            elif isinstance(event, Failed):  # a broken frame or 1009: input is dropped now
                self._wake()
                self.transport.resume_reading()  # a full queue must not hide the peer's end
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
        if self._timer is None and not self.lost.done():
            self._timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def start_close(self, code: int, reason: str) -> None:
        """Send our Close (section 5.5.1); the peer's answer, EOF or the deadline ends it."""
        if self.ws.close(code, reason):
            self._write(self.ws.data_to_send())
            self.transport.resume_reading()  # a full queue must not hide the peer's Close
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
        if len(self.messages) == QUEUE_LIMIT // 2 and not self.transport.is_closing():
            self.transport.resume_reading()
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


# -- the API --------------------------------------------------------------------------------------


class WebSocket:
    """A WebSocket on a handler's stream, made by :func:`new_from_stream`.

    Attributes:
        protocol: the subprotocol ``accept()`` chose, or None.
        extensions: the ``Sec-WebSocket-Extensions`` value ``accept()`` sent, or None.
    """

    def __init__(self, stream: Any, request: Headers, key: str | None, options: tuple) -> None:
        self.stream = stream
        self.request = request
        self.protocol: str | None = None
        self.extensions: str | None = None
        self._key = key  # the Sec-WebSocket-Key over HTTP/1.1; None over HTTP/2
        self._options: tuple[int, float, bool] = options  # max size, close timeout, compression
        self._channel: _Channel | None = None

    @property
    def close_code(self) -> int | None:
        """The close code (as in :class:`ConnectionClosed`); None while open."""
        closed = self._channel.ws.closed if self._channel else None
        return closed[0] if closed else None

    @property
    def close_reason(self) -> str | None:
        """The close reason; None while open."""
        closed = self._channel.ws.closed if self._channel else None
        return closed[1] if closed else None

    async def accept(
        self, protocols: list[str] | tuple[str, ...] = (), headers: Headers | None = None
    ) -> None:
        """Answer the handshake and switch the connection to WebSocket.

        Args:
            protocols: the subprotocols the server speaks; the first one the client offered
                that is among them is chosen (RFC 6455 section 4.2.2 item 5.4).
            headers: extra response fields (pseudo-headers are ignored).

        Raises:
            StreamStateError: already accepted.
            ConnectionClosed: the client left during the handshake.
        """
        if self._channel is not None:
            raise StreamStateError("the WebSocket is already accepted")
        max_size, close_timeout, compression = self._options
        agreed = negotiate(self.request, self._key, protocols, compression)
        self.protocol, self.extensions = agreed.protocol, agreed.extensions
        res = agreed.response
        for name, value, never_index in headers or ():
            if not name.startswith(":"):
                res.append(name, value, never_index)
        channel = _Channel(WebSocketProtocol(agreed.enabled, max_size), close_timeout)
        try:
            await self.stream.write_headers(res, False)
            await self._connect(channel)
        except OSError as exc:
            raise ConnectionClosed(1006, "the client left during the handshake") from exc
        self._channel = channel
        # The task that accepted owns the connection: when it ends, the socket goes too.
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _: channel.abandon())

    async def _connect(self, channel: _Channel) -> None:
        if self._key is None:  # HTTP/2 (RFC 8441): the frames travel in the stream's DATA
            H2Tunnel(self.stream, channel).start()
            return
        # The transport, not the socket: a TLS session cannot leave prefork's TLS layer.
        data = await self.stream.connection.take_transport(channel)
        if data:  # frames the client sent right behind its request head
            channel.data_received(data)

    def _open(self) -> _Channel:
        if self._channel is None:
            raise StreamStateError("accept() the WebSocket first")
        return self._channel

    async def receive(self, timeout: float | None = None) -> str | bytes:
        """Return the next whole message: ``str`` (text) or ``bytes`` (binary).

        Raises:
            ConnectionClosed: closed (messages that arrived before are returned first).
            TimeoutError: no message within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            return await self._open().next_message()

    async def send(self, data: str | bytes) -> None:
        """Send one message: ``str`` as text, bytes-like as binary; waits while the socket's
        send buffer is over its high-water mark.

        Raises:
            ConnectionClosed: closed or closing. TypeError: neither str nor bytes-like.
        """
        if isinstance(data, bytes | bytearray | memoryview):
            data = bytes(data)
        elif not isinstance(data, str):
            raise TypeError(f"a message is str or bytes, not {type(data).__name__}")
        await self._open().send(data)

    async def ping(self, data: bytes = b"", timeout: float | None = None) -> None:
        """Send a Ping and wait for the peer's Pong (RFC 6455 section 5.5.2).

        Raises:
            ValueError: over 125 bytes (section 5.5). ConnectionClosed: closed before the
            Pong. TimeoutError: no Pong within ``timeout`` seconds.
        """
        data = bytes(data)
        check_ping(data)
        channel = self._open()
        pong = await channel.ping(data)
        async with asyncio.timeout(timeout):
            if not await asyncio.shield(pong):
                raise channel.ws.error()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a Close, wait up to the close timeout for the peer's, and close the socket.

        Returns once the socket is closed; a second call just waits for that.

        Raises:
            ValueError: a code that may not be sent (RFC 6455 section 7.4), or a reason over
                123 bytes of UTF-8 (section 5.5).
        """
        check_close(code, reason)
        channel = self._open()
        channel.start_close(code, reason)
        await asyncio.shield(channel.lost)

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        """The next message; iteration ends when the WebSocket closes, however it closed
        (``close_code`` says how): a client going away is no error of the server."""
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> WebSocket:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        """Close with 1000, or 1011 (internal error) when the block raised. A
        ``ConnectionClosed`` ends the block quietly: a peer that left is no server error."""
        if self._channel is not None:
            await self.close(1000 if exc_type is None else 1011)
        return exc_type is not None and issubclass(exc_type, ConnectionClosed)
