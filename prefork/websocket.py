"""WebSocket (RFC 6455) for ``onstream`` handlers, on wsproto.

wsproto frames sans-I/O; this module adds the handshake, which arrives as a prefork stream
with its head parsed (:func:`new_from_stream` checks it, RFC 6455 section 4.2.1, and answers a
bad one), and the byte mover: :meth:`WebSocket.accept` writes the ``101``, takes the socket
over and gives it to :class:`_Channel`, one small ``asyncio.Protocol`` that feeds wsproto,
answers Pings and Closes at once (even while the handler is busy), applies back-pressure both
ways and owns the one closing deadline. Over HTTP/1.1 (plain or TLS) the socket is taken
over (:class:`_H1Upgrade`); over HTTP/2 an extended CONNECT (RFC 8441) is answered ``200`` and
the frames travel in the stream's DATA frames (:class:`_H2Connect`), chosen by
``stream.connection.version``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections import deque
from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, Pong, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

from prefork.aio.h2tunnel import H2Tunnel
from prefork.errors import StreamStateError
from prefork.headers import Headers

__all__ = [
    "ConnectionClosed",
    "HandshakeError",
    "WebSocket",
    "check_connect",
    "check_request",
    "new_from_stream",
]

MAX_MESSAGE_SIZE = 2**20  # default limit of one received message (bytes; characters of text)
CLOSE_TIMEOUT = 10.0  # default wait for the peer's Close, then for the last bytes to leave
QUEUE_LIMIT = 16  # whole messages held unread before the socket stops being read
INFLATE_STEP = 4096  # compressed bytes given to wsproto at a time (see _Channel.data_received)
SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})  # section 7.4
OPEN, LOCAL_CLOSING = ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING


class HandshakeError(Exception):
    """Not a valid WebSocket handshake; the error response (``status``: 400 or 426) is sent."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ConnectionClosed(Exception):
    """The WebSocket is closed or closing: nothing more can be received or sent.

    Attributes:
        code: the peer's close code when its Close came first; ours when we closed first
            (also 1009 or 1002 when the peer broke a limit or the protocol); 1006 when the
            connection ended without a Close (RFC 6455 section 7.1.5).
        reason: the close reason, maybe empty.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


# -- the opening handshake ----------------------------------------------------------------------


def _tokens(headers: Headers, name: str) -> list[str]:
    value = headers.get_comma_separated(name) or ""
    return [token.strip() for token in value.split(",") if token.strip()]


def check_request(headers: Headers, version: float) -> str:
    """Check an HTTP/1.1 handshake (RFC 6455 section 4.2.1); return its Sec-WebSocket-Key.

    Pure, so each rule is testable without a connection. ``version``: the lower of both ends'.

    Raises:
        HandshakeError: with status 426 for a version other than 13 (section 4.4), else 400.
    """
    if headers.get(":method") != "GET":  # section 4.2.1 item 1
        raise HandshakeError("a WebSocket handshake must be a GET request")
    if version < 1.1:  # item 1; HTTP/1.0 has neither Upgrade nor 1xx responses
        raise HandshakeError("a WebSocket handshake needs HTTP/1.1")
    if not headers.get("host"):  # item 2
        raise HandshakeError("a WebSocket handshake needs a Host header")
    if "websocket" not in (t.lower() for t in _tokens(headers, "upgrade")):  # item 3
        raise HandshakeError("missing 'Upgrade: websocket'")
    if "upgrade" not in (t.lower() for t in _tokens(headers, "connection")):  # item 4
        raise HandshakeError("missing the 'upgrade' token in Connection")
    versions = headers.get_as_sequence("sec-websocket-version")  # item 6
    if not versions:
        raise HandshakeError("missing Sec-WebSocket-Version")
    if versions != ("13",):
        raise HandshakeError(f"unsupported Sec-WebSocket-Version {versions!r}", 426)
    keys = headers.get_as_sequence("sec-websocket-key")  # item 5: 16 bytes in base64
    try:
        if len(keys) != 1 or len(base64.b64decode(keys[0], validate=True)) != 16:
            raise ValueError
    except (ValueError, binascii.Error):
        raise HandshakeError("Sec-WebSocket-Key must be 16 bytes in base64") from None
    return keys[0]


def check_connect(headers: Headers) -> None:
    """Check an HTTP/2 extended CONNECT handshake (RFC 8441 sections 4 and 5).

    There is no Sec-WebSocket-Key nor Accept over HTTP/2 (section 5); the version rule is
    RFC 6455's. h2 has already checked the pseudo-headers (``:scheme`` and ``:path`` present
    on an extended CONNECT, ``:protocol`` only on CONNECT).

    Raises:
        HandshakeError: with status 426 for a version other than 13, else 400.
    """
    if headers.get(":method") != "CONNECT" or headers.get(":protocol") is None:
        raise HandshakeError("a WebSocket over HTTP/2 is an extended CONNECT (RFC 8441)")
    if (headers.get(":protocol") or "").lower() != "websocket":
        raise HandshakeError(f"unsupported :protocol {headers.get(':protocol')!r}")
    if not headers.get(":authority") or not headers.get(":path") or not headers.get(":scheme"):
        raise HandshakeError("an extended CONNECT needs :authority, :scheme and :path")
    versions = headers.get_as_sequence("sec-websocket-version")
    if not versions:
        raise HandshakeError("missing Sec-WebSocket-Version")
    if versions != ("13",):
        raise HandshakeError(f"unsupported Sec-WebSocket-Version {versions!r}", 426)


async def _refuse(stream: Any, error: HandshakeError) -> None:
    body = f"{error}\n".encode()
    res = Headers()
    res.append(":status", str(error.status))
    h1 = stream.connection.version < 2  # HTTP/2 has no Upgrade nor Connection (RFC 9113 8.2.2)
    if error.status == 426:  # RFC 6455 section 4.4; RFC 9110 section 15.5.22 wants Upgrade
        if h1:
            res.append("upgrade", "websocket")
        res.append("sec-websocket-version", "13")  # RFC 8441 section 5: the same over HTTP/2
    if h1:
        res.append("connection", "upgrade, close" if error.status == 426 else "close")
    res.append("content-type", "text/plain; charset=utf-8")
    res.append("content-length", str(len(body)))
    with contextlib.suppress(OSError):  # a client that left needs no answer
        await stream.write_headers(res, False)
        await stream.write_chunk(body, True)


class _H1Upgrade:
    """HTTP/1.1 becomes WebSocket by a 101, then the socket is taken over."""

    def __init__(self, key: str) -> None:
        self.key = key

    def response(self) -> Headers:
        accept = generate_accept_token(self.key.encode()).decode()  # section 4.2.2 item 5
        fields = [("upgrade", "websocket"), ("connection", "upgrade")]
        return Headers([(":status", "101"), *fields, ("sec-websocket-accept", accept)])

    async def open(self, stream: Any, channel: _Channel) -> None:
        # The transport, not the socket: a TLS session cannot leave prefork's TLS layer.
        data = await stream.connection.take_transport(channel)
        if data:  # frames the client sent right behind its request head
            channel.data_received(data)


class _H2Connect:
    """HTTP/2 extended CONNECT (RFC 8441): a ``:status 200``, then the WebSocket frames travel
    in the stream's DATA frames, through an :class:`~prefork.aio.h2tunnel.H2Tunnel`."""

    def response(self) -> Headers:
        return Headers([(":status", "200")])

    async def open(self, stream: Any, channel: _Channel) -> None:
        H2Tunnel(stream, channel).start()


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
    upgrade: _H1Upgrade | _H2Connect
    try:
        if version >= 2:  # RFC 8441: extended CONNECT with :protocol websocket
            check_connect(headers)
            upgrade = _H2Connect()
        else:
            upgrade = _H1Upgrade(check_request(headers, min(stream.peer_version, version)))
    except HandshakeError as exc:
        await _refuse(stream, exc)
        raise
    options = (max_message_size, close_timeout, compression)
    return WebSocket(stream, headers, upgrade, options)


# -- the connection -------------------------------------------------------------------------------


class _Channel(asyncio.Protocol):
    """Moves bytes between the socket and wsproto; every way of ending ends in ``lost``."""

    def __init__(
        self, ws: Connection, max_message_size: int, close_timeout: float, inflating: bool
    ) -> None:
        self.ws = ws
        self.inflating = inflating
        self.max_size = max_message_size
        self.close_timeout = close_timeout
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.messages: deque[str | bytes] = deque()
        self.closed: tuple[int, str] | None = None  # (code, reason) from the moment of closing
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.pings: dict[bytes, asyncio.Future[bool]] = {}
        self._parts: list[Any] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # wsproto inflates (permessage-deflate) all it is given at once: small slices bound
        # what a compression bomb can grow to (about 1000 times a slice) between size checks.
        step = INFLATE_STEP if self.inflating else max(len(data), 1)
        for start in range(0, len(data), step):
            self._feed(data[start : start + step])

    def eof_received(self) -> bool:
        self._feed(None)  # wsproto: an end without a Close frame is 1006
        return False

    def _feed(self, data: bytes | None) -> None:
        if self.ws.state in (OPEN, LOCAL_CLOSING) and not self._failed:
            self.ws.receive_data(data)
            self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._closing(1006, "connection lost")
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

    def _process(self) -> None:
        for event in self.ws.events():
            if isinstance(event, Message):
                self._on_message(event)
            elif isinstance(event, Ping) and self.ws.state is OPEN:
                self._write(self.ws.send(event.response()))  # RFC 6455 section 5.5.3
            elif isinstance(event, Pong):
                self._on_pong(event.payload)
            elif isinstance(event, CloseConnection):
                self._on_close(event)

    def _on_message(self, event: Message) -> None:
        if self.ws.state is not OPEN:
            return  # data behind our Close is dropped (RFC 6455 section 1.4)
        self._parts.append(event.data)
        self._size += len(event.data)
        if self._size > self.max_size:  # RFC 6455 section 7.4.1: 1009, message too big
            self._parts.clear()
            self.start_close(1009, f"message over {self.max_size} bytes")
            return
        if event.message_finished:  # fragments (section 5.4) are joined into one message
            parts, self._parts, self._size = self._parts, [], 0
            text = isinstance(event, TextMessage)
            self.messages.append("".join(parts) if text else b"".join(parts))
            self._wake()
            if len(self.messages) >= QUEUE_LIMIT:
                self.transport.pause_reading()  # back-pressure: the handler reads too slowly

    def _on_pong(self, payload: bytes) -> None:
        # A Pong may answer only the latest of several Pings (section 5.5.3): settle all
        # those sent before it too.
        while payload in self.pings:
            key = next(iter(self.pings))
            future = self.pings.pop(key)
            if not future.done():
                future.set_result(True)

    def _on_close(self, event: CloseConnection) -> None:
        state = self.ws.state
        if state is OPEN:  # a broken frame (wsproto's Close event): fail (section 7.1.7)
            self.start_close(event.code, event.reason or "")
            # Nothing more can be parsed: shut our side, drop input until EOF or the deadline
            # (closing with unread input could reset the connection and lose our Close).
            self._failed = True
            self.transport.write_eof()
        elif state is ConnectionState.REMOTE_CLOSING:  # echo the peer's Close (5.5.1)
            self._closing(event.code, event.reason or "")
            self._write(self.ws.send(event.response()))
            self._finish()
        elif state is ConnectionState.CLOSED:  # both Close frames seen (7.1.2), or EOF
            self._closing(event.code, event.reason or "")
            self._finish()
        else:  # garbage behind our own Close
            self.transport.abort()

    def _closing(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (int(code), reason)
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def _finish(self) -> None:
        self.transport.close()  # RFC 6455 section 7.1.1: the server closes TCP first
        self._arm()

    def _arm(self) -> None:
        # One deadline for the whole closing phase: the peer's Close, then the flush.
        if self._timer is None and not self.lost.done():
            self._timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def start_close(self, code: int, reason: str) -> None:
        """Send our Close (section 5.5.1); the peer's answer, EOF or the deadline ends it."""
        self._closing(code, reason)
        if self.ws.state is OPEN:
            self._write(self.ws.send(CloseConnection(code=code, reason=reason)))
            self.transport.resume_reading()  # a full queue must not hide the peer's Close
        self._arm()

    def abandon(self) -> None:
        if not self.lost.done():
            self.transport.abort()

    def error(self) -> ConnectionClosed:
        return ConnectionClosed(*(self.closed or (1006, "")))

    async def next_message(self) -> str | bytes:
        while not self.messages:
            if self.closed is not None:
                raise self.error()
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if len(self.messages) == QUEUE_LIMIT // 2 and not self.transport.is_closing():
            self.transport.resume_reading()
        return self.messages.popleft()

    async def send(self, event: Event) -> None:
        if self.closed is not None or self.ws.state is not OPEN:
            raise self.error()
        self._write(self.ws.send(event))
        while self._drain is not None:  # back-pressure: the transport's buffer is full
            if not await asyncio.shield(self._drain):
                raise self.error()


# -- the API --------------------------------------------------------------------------------------


class WebSocket:
    """A WebSocket on a handler's stream, made by :func:`new_from_stream`.

    Attributes:
        protocol: the subprotocol ``accept()`` chose, or None.
        extensions: the ``Sec-WebSocket-Extensions`` value ``accept()`` sent, or None.
    """

    def __init__(
        self, stream: Any, request: Headers, upgrade: _H1Upgrade | _H2Connect, options: tuple
    ) -> None:
        self.stream = stream
        self.request = request
        self.protocol: str | None = None
        self.extensions: str | None = None
        self._upgrade = upgrade
        self._options: tuple[int, float, bool] = options  # max size, close timeout, compression
        self._channel: _Channel | None = None

    @property
    def close_code(self) -> int | None:
        """The close code (as in :class:`ConnectionClosed`); None while open."""
        return self._channel.closed[0] if self._channel and self._channel.closed else None

    @property
    def close_reason(self) -> str | None:
        """The close reason; None while open."""
        return self._channel.closed[1] if self._channel and self._channel.closed else None

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
        res, enabled = self._negotiate(protocols, compression)
        for name, value, never_index in headers or ():
            if not name.startswith(":"):
                res.append(name, value, never_index)
        ws = Connection(ConnectionType.SERVER, enabled)
        channel = _Channel(ws, max_size, close_timeout, bool(enabled))
        try:
            await self.stream.write_headers(res, False)
            await self._upgrade.open(self.stream, channel)
        except OSError as exc:
            raise ConnectionClosed(1006, "the client left during the handshake") from exc
        self._channel = channel
        # The task that accepted owns the connection: when it ends, the socket goes too.
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _: channel.abandon())

    def _negotiate(
        self, protocols: list[str] | tuple[str, ...], compression: bool
    ) -> tuple[Headers, list[Extension]]:
        """The response's fields (the upgrade's, the subprotocol, the extensions agreed by
        RFC 7692 section 5) and the extensions that are now on."""
        res = self._upgrade.response()
        offered = _tokens(self.request, "sec-websocket-protocol")
        self.protocol = next((p for p in offered if p in protocols), None)
        if self.protocol is not None:
            res.append("sec-websocket-protocol", self.protocol)
        supported: list[Extension] = [PerMessageDeflate()] if compression else []
        offers = _tokens(self.request, "sec-websocket-extensions")
        agreed = server_extensions_handshake(offers, supported)
        if agreed:
            self.extensions = agreed.decode("ascii")
            res.append("sec-websocket-extensions", self.extensions)
        return res, [e for e in supported if e.enabled()]

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
        if isinstance(data, str):
            event: Event = TextMessage(data=data)
        elif isinstance(data, bytes | bytearray | memoryview):
            event = BytesMessage(data=bytes(data))
        else:
            raise TypeError(f"a message is str or bytes, not {type(data).__name__}")
        await self._open().send(event)

    async def ping(self, data: bytes = b"", timeout: float | None = None) -> None:
        """Send a Ping and wait for the peer's Pong (RFC 6455 section 5.5.2).

        Raises:
            ValueError: over 125 bytes (section 5.5). ConnectionClosed: closed before the
            Pong. TimeoutError: no Pong within ``timeout`` seconds.
        """
        data = bytes(data)
        if len(data) > 125:
            raise ValueError("a ping carries at most 125 bytes")
        channel = self._open()
        pong = channel.pings.get(data)
        if pong is None:  # one future per payload: concurrent equal pings share the Pong
            pong = channel.pings[data] = channel.loop.create_future()
        await channel.send(Ping(payload=data))
        async with asyncio.timeout(timeout):
            if not await asyncio.shield(pong):
                raise channel.error()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a Close, wait up to the close timeout for the peer's, and close the socket.

        Returns once the socket is closed; a second call just waits for that.

        Raises:
            ValueError: a code that may not be sent (RFC 6455 section 7.4), or a reason over
                123 bytes of UTF-8 (section 5.5).
        """
        if code not in SENDABLE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"close code {code} may not be sent")
        if len(reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
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
