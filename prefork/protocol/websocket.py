"""WebSocket for a server, sans-I/O: the opening handshake and wsproto's framing.

The handshake is pure functions of header lists: :func:`check_request` (HTTP/1.1, RFC 6455
section 4.2.1) and :func:`check_connect` (HTTP/2 extended CONNECT, RFC 8441) check a request,
:func:`refusal` answers a :class:`HandshakeError`, :func:`negotiate` builds the accepting head
(accept token, subprotocol, permessage-deflate per RFC 7692) and says what was agreed.

:class:`WebSocketProtocol` is wsproto's ``Connection`` for a server, bytes in, events out, as
in h2: feed what was read to ``receive_data``, write ``data_to_send()``, then act on the events
(a :class:`Message`, a :class:`Pong`; :class:`Failed`, :class:`Closed` and
:class:`BrokenAfterClose` say what to do with the connection). It joins fragments, bounds a
message's size (inflating in slices, and no further once over the limit), answers Pings and
the peer's Close, and keeps the close code. The caller owns the connection and the closing deadline.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.events import Message as WsprotoMessage
from wsproto.events import Pong as WsprotoPong
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

from prefork.headers import Headers

MAX_MESSAGE_SIZE = 2**20  # default limit of one received message (bytes; characters of text)
INFLATE_STEP = 4096  # compressed bytes given to wsproto at a time (see receive_data)
SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})  # section 7.4
_OPEN, _LOCAL_CLOSING = ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING


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


def _check_version(headers: Headers) -> None:
    versions = headers.get_as_sequence("sec-websocket-version")  # section 4.2.1 item 6
    if not versions:
        raise HandshakeError("missing Sec-WebSocket-Version")
    if versions != ("13",):
        raise HandshakeError(f"unsupported Sec-WebSocket-Version {versions!r}", 426)


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
    _check_version(headers)
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
    _check_version(headers)


def refusal(error: HandshakeError, http2: bool) -> tuple[Headers, bytes]:
    """The response refusing a handshake: its head (``error.status``) and a one-line body."""
    body = f"{error}\n".encode()
    res = Headers()
    res.append(":status", str(error.status))
    if error.status == 426:  # RFC 6455 section 4.4; RFC 9110 section 15.5.22 wants Upgrade
        if not http2:
            res.append("upgrade", "websocket")
        res.append("sec-websocket-version", "13")  # RFC 8441 section 5: the same over HTTP/2
    if not http2:  # HTTP/2 has no Upgrade nor Connection (RFC 9113 section 8.2.2)
        res.append("connection", "upgrade, close" if error.status == 426 else "close")
    res.append("content-type", "text/plain; charset=utf-8")
    res.append("content-length", str(len(body)))
    return res, body


@dataclass
class Agreement:
    """What :func:`negotiate` agreed."""

    response: Headers  # the accepting head; the caller may append extra fields
    protocol: str | None  # the subprotocol chosen
    extensions: str | None  # the Sec-WebSocket-Extensions value sent
    enabled: list[Extension]  # the wsproto extensions now on, for WebSocketProtocol


def negotiate(
    request: Headers, key: str | None, protocols: Sequence[str], compression: bool
) -> Agreement:
    """Answer a checked handshake: ``101`` with Sec-WebSocket-Accept (section 4.2.2 item 5)
    for the ``key`` from :func:`check_request`, ``:status 200`` for None (HTTP/2, RFC 8441
    section 5); then the subprotocol, the first the client offered that is in ``protocols``
    (item 5.4), and permessage-deflate if offered and ``compression`` (RFC 7692 section 5).
    """
    if key is None:
        res = Headers([(":status", "200")])
    else:
        accept = generate_accept_token(key.encode()).decode()
        fields = [("upgrade", "websocket"), ("connection", "upgrade")]
        res = Headers([(":status", "101"), *fields, ("sec-websocket-accept", accept)])
    offered = _tokens(request, "sec-websocket-protocol")
    protocol = next((p for p in offered if p in protocols), None)
    if protocol is not None:
        res.append("sec-websocket-protocol", protocol)
    supported: list[Extension] = [PerMessageDeflate()] if compression else []
    agreed = server_extensions_handshake(_tokens(request, "sec-websocket-extensions"), supported)
    extensions = agreed.decode("ascii") if agreed else None
    if extensions is not None:
        res.append("sec-websocket-extensions", extensions)
    return Agreement(res, protocol, extensions, [e for e in supported if e.enabled()])


def check_ping(payload: bytes) -> None:
    """Raise ValueError for a Ping payload over 125 bytes (RFC 6455 section 5.5)."""
    if len(payload) > 125:
        raise ValueError("a ping carries at most 125 bytes")


def check_close(code: int, reason: str) -> None:
    """Raise ValueError for a close code an endpoint may not send (RFC 6455 section 7.4) or a
    reason over 123 bytes of UTF-8 (section 5.5)."""
    if code not in SENDABLE_CODES and not 3000 <= code <= 4999:
        raise ValueError(f"close code {code} may not be sent")
    if len(reason.encode()) > 123:
        raise ValueError("a close reason is at most 123 bytes of UTF-8")


# -- the connection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A whole message (fragments joined, section 5.4): ``str`` for text, ``bytes`` binary."""

    data: str | bytes


@dataclass(frozen=True)
class Pong:
    """A Pong answered the Pings sent with these payloads (oldest first, section 5.5.3)."""

    answered: tuple[bytes, ...]


@dataclass(frozen=True)
class Failed:
    """A broken frame (section 7.1.7) or a message over the limit (1009, section 7.4.1): our
    Close is queued and later input is dropped, unparsed and not inflated. Send it, end the
    sending side and wait for the peer's end (up to the deadline): closing with unread input
    could reset the connection and lose the Close."""

    code: int
    reason: str


@dataclass(frozen=True)
class Closed:
    """The closing handshake is over (the peer's Close, with ``code``, is answered or answered
    ours; 1006: the connection ended without one). Send what is queued and close the
    connection: the server closes TCP first (section 7.1.1)."""

    code: int
    reason: str


@dataclass(frozen=True)
class BrokenAfterClose:
    """A broken frame after our Close: no answer can come; drop the connection."""


WebSocketEvent = Message | Pong | Failed | Closed | BrokenAfterClose


class WebSocketProtocol:
    """A server's WebSocket connection after the handshake, sans-I/O, on wsproto.

    Attributes:
        closed: ``(code, reason)`` from the moment the WebSocket started closing, as in
            :class:`ConnectionClosed`; None while open.
    """

    def __init__(
        self, extensions: Sequence[Extension] = (), max_message_size: int = MAX_MESSAGE_SIZE
    ) -> None:
        self._ws = Connection(ConnectionType.SERVER, list(extensions))
        self._inflating = bool(extensions)
        self.max_message_size = max_message_size
        self.closed: tuple[int, str] | None = None
        self._out: list[bytes] = []
        self._events: list[WebSocketEvent] = []
        self._parts: list[Any] = []
        self._size = 0
        self._pings: dict[bytes, None] = {}  # payloads sent, oldest first
        self._failed = False

    def data_to_send(self) -> bytes:
        """The bytes to write to the peer, in order; empties the buffer."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def receive_data(self, data: bytes | None) -> list[WebSocketEvent]:
        """Feed bytes read (None: the peer's end); return what happened, in order.

        Write :meth:`data_to_send` before acting on the events.
        """
        if data is None:
            self._feed(None)  # wsproto: an end without a Close frame is 1006
        else:
            # wsproto inflates (permessage-deflate) all it is given at once: small slices bound
            # what a compression bomb grows to (about 1000 times a slice) between size checks.
            step = INFLATE_STEP if self._inflating else max(len(data), 1)
            for start in range(0, len(data), step):
                self._feed(data[start : start + step])
        events, self._events = self._events, []
        return events

    def send_message(self, data: str | bytes) -> None:
        """Queue one message as one frame: ``str`` as text, ``bytes`` as binary.

        Raises:
            ConnectionClosed: closed or closing.
        """
        event = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        self._send(event)

    def send_ping(self, payload: bytes) -> None:
        """Queue a Ping (see :func:`check_ping`); its answer comes as a :class:`Pong` event.

        Raises:
            ConnectionClosed: closed or closing.
        """
        self._send(Ping(payload=payload))
        self._pings.setdefault(payload, None)

    def close(self, code: int, reason: str) -> bool:
        """Start (or join) the closing handshake (section 5.5.1; see :func:`check_close`).

        Returns:
            Whether a Close was queued (False: one was already sent or received).
        """
        self._closing(code, reason)
        if self._ws.state is not _OPEN:
            return False
        self._out.append(self._ws.send(CloseConnection(code=code, reason=reason)))
        return True

    def connection_lost(self) -> None:
        """The connection is gone: a WebSocket not closing yet ends with 1006."""
        self._closing(1006, "connection lost")

    def error(self) -> ConnectionClosed:
        """The :class:`ConnectionClosed` to raise once closed (1006 if not closed yet)."""
        return ConnectionClosed(*(self.closed or (1006, "")))

    def _send(self, event: Event) -> None:
        if self.closed is not None or self._ws.state is not _OPEN:
            raise self.error()
        self._out.append(self._ws.send(event))

    def _closing(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (int(code), reason)

    def _feed(self, data: bytes | None) -> None:
        if self._ws.state not in (_OPEN, _LOCAL_CLOSING) or self._failed:
            return
        self._ws.receive_data(data)
        for event in self._ws.events():  # parsed (and inflated) one frame at a time
            if isinstance(event, WsprotoMessage):
                self._on_message(event)
            elif isinstance(event, Ping) and self._ws.state is _OPEN:
                self._out.append(self._ws.send(event.response()))  # section 5.5.3
            elif isinstance(event, WsprotoPong):
                self._on_pong(event.payload)
            elif isinstance(event, CloseConnection):
                self._on_close(event)
            if self._failed:
                break  # the rest of this slice is not even inflated

    def _on_message(self, event: WsprotoMessage) -> None:
        if self._ws.state is not _OPEN:
            return  # data behind our Close is dropped (RFC 6455 section 1.4)
        self._parts.append(event.data)
        self._size += len(event.data)
        if self._size > self.max_message_size:  # RFC 6455 section 7.4.1: 1009, message too big
            # Fail (as websockets does): reading on for the peer's Close would inflate the
            # rest of the message, however large, to find it.
            self._parts.clear()
            self._fail(1009, f"message over {self.max_message_size} bytes")
            return
        if event.message_finished:
            parts, self._parts, self._size = self._parts, [], 0
            text = isinstance(event, TextMessage)
            self._events.append(Message("".join(parts) if text else b"".join(parts)))

    def _fail(self, code: int, reason: str) -> None:
        self.close(code, reason)
        self._failed = True
        self._events.append(Failed(code, reason))

    def _on_pong(self, payload: bytes) -> None:
        # A Pong may answer only the latest of several Pings (5.5.3): settle the earlier too.
        answered: list[bytes] = []
        while payload in self._pings:
            answered.append(next(iter(self._pings)))
            del self._pings[answered[-1]]
        if answered:
            self._events.append(Pong(tuple(answered)))

    def _on_close(self, event: CloseConnection) -> None:
        state, code, reason = self._ws.state, event.code, event.reason or ""
        if state is _OPEN:  # a broken frame (wsproto's Close event): fail (section 7.1.7)
            self._fail(code, reason)
        elif state is _LOCAL_CLOSING:  # garbage behind our own Close
            self._events.append(BrokenAfterClose())
        else:  # the peer's Close, echoed (5.5.1), or both Close frames seen (7.1.2), or EOF
            self._closing(code, reason)
            if state is ConnectionState.REMOTE_CLOSING:
                self._out.append(self._ws.send(event.response()))
            self._events.append(Closed(code, reason))
