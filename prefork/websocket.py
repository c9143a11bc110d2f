"""WebSocket (RFC 6455) for ``onstream`` handlers.

The protocol is sans-I/O in :mod:`prefork.protocol.websocket` (the handshake checks, the
accepting head, wsproto's framing); :mod:`prefork.aio.wschannel` moves its bytes. Here is the
API: :func:`new_from_stream` checks the handshake, which arrives as a prefork stream with its
head parsed, and answers a bad one; :meth:`WebSocket.accept` writes the accepting head and
gives the connection to a ``WebSocketChannel``, the small ``asyncio.Protocol`` that feeds the
protocol, writes what it queues, applies back-pressure both ways and owns the timers. Over
HTTP/1.1 (plain or TLS) the transport is taken over from the HTTP connection; over HTTP/2 an
extended CONNECT (RFC 8441) is answered ``200`` and the frames travel in the stream's DATA
frames (an ``H2Tunnel``), chosen by ``stream.connection.version``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from prefork.aio.wschannel import WebSocketChannel
from prefork.errors import StreamStateError
from prefork.headers import Headers
from prefork.protocol.websocket import (
    MAX_MESSAGE_SIZE,
    ConnectionClosed,
    HandshakeError,
    WebSocketProtocol,
    check_close,
    check_connect,
    check_ping,
    check_request,
    negotiate,
    refusal,
)
from prefork.stream import within

__all__ = [
    "ConnectionClosed",
    "HandshakeError",
    "WebSocket",
    "check_connect",
    "check_request",
    "new_from_stream",
]

CLOSE_TIMEOUT = 10.0  # default wait for the peer's Close, then for the last bytes to leave
PING_INTERVAL = 20.0  # default keep-alive: a Ping this long after the last (uvicorn's default)
PING_TIMEOUT = 20.0  # default time for its Pong, then 1011 (uvicorn's default)


# -- the opening handshake ----------------------------------------------------------------------


async def new_from_stream(
    stream: Any,
    headers: Headers,
    *,
    max_message_size: int = MAX_MESSAGE_SIZE,
    close_timeout: float = CLOSE_TIMEOUT,
    compression: bool = True,
    ping_interval: float | None = PING_INTERVAL,
    ping_timeout: float | None = PING_TIMEOUT,
) -> WebSocket:
    """Check a WebSocket handshake request, to be ``accept()``-ed next (nothing is written).

    Args:
        stream: the stream the request came on; ``headers``: its request headers.
        max_message_size: largest message received; a larger one closes with 1009.
        close_timeout: seconds to wait for the peer's Close, then for the last bytes to leave.
        compression: whether to accept permessage-deflate (RFC 7692) when the client offers it.
        ping_interval: seconds between keep-alive Pings (None: none), from ``accept()`` on.
        ping_timeout: seconds a keep-alive Ping may wait for its Pong (None: forever); then
            the WebSocket closes with 1011 and the connection is dropped.

    Raises:
        HandshakeError: not a valid handshake; the 400 (426 for a wrong version) is sent.
        ValueError: an option out of range.
    """
    if max_message_size < 1 or close_timeout < 0:
        raise ValueError("max_message_size must be >= 1 and close_timeout >= 0")
    if any(t is not None and not t > 0 for t in (ping_interval, ping_timeout)):
        raise ValueError("ping_interval and ping_timeout must be > 0 or None")
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
    timeouts = (close_timeout, ping_interval, ping_timeout)
    return WebSocket(stream, headers, key, (max_message_size, compression, timeouts))


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
        self._options: tuple[int, bool, tuple] = options  # max size, compression, timeouts
        self._channel: WebSocketChannel | None = None

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

    @property
    def transport(self) -> asyncio.Transport | None:
        """The transport the frames travel on: the connection's (HTTP/1.1) or an ``H2Tunnel``
        (HTTP/2); None before ``accept()``. ``get_write_buffer_size()`` tells what waits."""
        return self._channel.transport if self._channel else None

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
        max_size, compression, timeouts = self._options
        agreed = negotiate(self.request, self._key, protocols, compression)
        self.protocol, self.extensions = agreed.protocol, agreed.extensions
        res = agreed.response
        for name, value, never_index in headers or ():
            if not name.startswith(":"):
                res.append(name, value, never_index)
        channel = WebSocketChannel(WebSocketProtocol(agreed.enabled, max_size), *timeouts)
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

    async def _connect(self, channel: WebSocketChannel) -> None:
        if self._key is None:  # HTTP/2 (RFC 8441): the frames travel in the stream's DATA
            from prefork.aio.h2tunnel import H2Tunnel  # h2's: loaded with the HTTP/2 connection

            H2Tunnel(self.stream, channel).start()
            return
        # The transport, not the socket: a TLS session cannot leave prefork's TLS layer.
        data = await self.stream.connection.take_transport(channel)
        if data:  # frames the client sent right behind its request head
            channel.data_received(data)

    def _open(self) -> WebSocketChannel:
        if self._channel is None:
            raise StreamStateError("accept() the WebSocket first")
        return self._channel

    async def receive(self, timeout: float | None = None) -> str | bytes:
        """Return the next whole message: ``str`` (text) or ``bytes`` (binary).

        Raises:
            ConnectionClosed: closed (messages that arrived before are returned first).
            TimeoutError: no message within ``timeout`` seconds.
        """
        async with within(timeout):
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
        async with within(timeout):
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
