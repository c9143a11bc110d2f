"""prefork.protocol.websocket, sans-I/O: two peers in memory, no sockets, no loop.

The client is wsproto's own: its ``H11Handshake`` sends a real opening handshake and checks
the answer (the Sec-WebSocket-Accept token, the subprotocol, the extensions), and its
``Connection`` then talks to a :class:`WebSocketProtocol` through :class:`Pair`.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import h11
import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)
from wsproto.events import Pong as ClientPong
from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import H11Handshake

from prefork.headers import Headers
from prefork.protocol.websocket import (
    INFLATE_STEP,
    BrokenAfterClose,
    Closed,
    ConnectionClosed,
    Failed,
    HandshakeError,
    Message,
    Pong,
    WebSocketProtocol,
    check_close,
    check_connect,
    check_ping,
    check_request,
    negotiate,
    refusal,
)


def parse_request(wire: bytes) -> Headers:
    """The prefork Headers of an HTTP/1.1 request head (as the HTTP/1 parser gives them)."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(wire)
    event = server.next_event()
    assert isinstance(event, h11.Request)
    headers = Headers([(":method", event.method.decode()), (":path", event.target.decode())])
    for name, value in event.headers:
        headers.append(name.decode(), value.decode())
    return headers


def serialize_response(headers: Headers) -> bytes:
    fields = [(n, v) for n, v, _ in headers if not n.startswith(":")]
    lines = [f"HTTP/1.1 {headers.get(':status')} Switching Protocols"]
    return ("\r\n".join(lines + [f"{n}: {v}" for n, v in fields]) + "\r\n\r\n").encode()


class Pair:
    """A wsproto client and a server :class:`WebSocketProtocol` after a real handshake."""

    def __init__(
        self,
        offered: tuple[str, ...] = (),
        protocols: tuple[str, ...] = (),
        deflate: bool = False,
        compression: bool = True,
        max_message_size: int = 2**20,
    ) -> None:
        handshake = H11Handshake(ConnectionType.CLIENT)
        extensions = [PerMessageDeflate()] if deflate else []
        wire = handshake.send(
            Request(host="x", target="/ws", subprotocols=list(offered), extensions=extensions)
        )
        request = parse_request(wire)
        self.agreed = negotiate(request, check_request(request, 1.1), protocols, compression)
        handshake.receive_data(serialize_response(self.agreed.response))
        events = list(handshake.events())  # wsproto checks the accept token and the choices
        assert len(events) == 1 and isinstance(events[0], AcceptConnection), events
        self.accepted = events[0]
        assert handshake.connection is not None
        self.client: Connection = handshake.connection
        self.server = WebSocketProtocol(self.agreed.enabled, max_message_size)

    def to_server(self, *events: Event) -> list[Any]:
        return self.server.receive_data(b"".join(self.client.send(e) for e in events))

    def to_client(self) -> list[Event]:
        self.client.receive_data(self.server.data_to_send())
        return list(self.client.events())


# -- the handshake --------------------------------------------------------------------------------


def test_a_wsproto_client_accepts_the_handshake_with_subprotocol_and_deflate() -> None:
    pair = Pair(
        offered=("other", "superchat", "chat"), protocols=("chat", "superchat"), deflate=True
    )
    assert pair.agreed.protocol == "superchat"  # the client's first choice the server speaks
    assert pair.accepted.subprotocol == "superchat"
    assert pair.agreed.extensions is not None
    assert pair.agreed.extensions.startswith("permessage-deflate")
    assert [e.name for e in pair.accepted.extensions] == ["permessage-deflate"]
    text = "compress me " * 1000
    wire = pair.client.send(TextMessage(data=text))
    assert wire[0] & 0x40 and len(wire) < 200  # RSV1: the message travels compressed
    assert pair.server.receive_data(wire) == [Message(text)]
    pair.server.send_message(text)
    assert pair.to_client() == [TextMessage(data=text)]


def test_no_common_subprotocol_and_compression_off() -> None:
    pair = Pair(offered=("other",), protocols=("chat",), deflate=True, compression=False)
    assert (pair.agreed.protocol, pair.agreed.extensions, pair.agreed.enabled) == (None, None, [])
    assert (pair.accepted.subprotocol, pair.accepted.extensions) == (None, [])
    names = [n for n, _, _ in pair.agreed.response]
    assert "sec-websocket-protocol" not in names and "sec-websocket-extensions" not in names
    assert not pair.client.send(BytesMessage(data=b"x" * 100))[0] & 0x40


def test_http2_is_answered_200_without_accept_token() -> None:
    request = Headers(
        [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":path", "/ws"),
            (":authority", "x"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ]
    )
    check_connect(request)
    agreed = negotiate(request, None, ["chat"], True)
    assert [(n, v) for n, v, _ in agreed.response][:2] == [
        (":status", "200"),
        ("sec-websocket-protocol", "chat"),
    ]
    assert agreed.response.get("sec-websocket-extensions") == "permessage-deflate"
    assert agreed.response.get("sec-websocket-accept") is None
    assert len(agreed.enabled) == 1


@pytest.mark.parametrize(
    ("status", "http2", "fields"),
    [
        (400, False, {"connection": "close"}),
        (426, False, {"upgrade": "websocket", "sec-websocket-version": "13"}),
        (426, True, {"sec-websocket-version": "13"}),
    ],
)
def test_refusals(status: int, http2: bool, fields: dict[str, str]) -> None:
    head, body = refusal(HandshakeError("no", status), http2)
    assert head.get(":status") == str(status)
    assert {n: head.get(n) for n in fields} == fields
    assert (head.get("connection") is None) == http2  # RFC 9113 section 8.2.2
    assert body == b"no\n" and head.get("content-length") == "3"


def test_argument_checks() -> None:
    check_ping(b"x" * 125)
    with pytest.raises(ValueError):
        check_ping(b"x" * 126)
    for code in (1000, 1011, 3000, 4999):
        check_close(code, "")
    for code in (999, 1004, 1005, 1006, 1015, 2999, 5000):
        with pytest.raises(ValueError):
            check_close(code, "")
    with pytest.raises(ValueError):
        check_close(1000, "é" * 62)  # 124 bytes of UTF-8


# -- messages -------------------------------------------------------------------------------------


def test_messages_both_ways_and_fragments_joined() -> None:
    pair = Pair()
    assert pair.to_server(TextMessage(data="héllo"), BytesMessage(data=b"\x00\xff")) == [
        Message("héllo"),
        Message(b"\x00\xff"),
    ]
    fragments = [
        BytesMessage(data=b"ab", message_finished=False),
        BytesMessage(data=b"cd", message_finished=False),
        BytesMessage(data=b"ef"),
    ]
    assert pair.to_server(*fragments) == [Message(b"abcdef")]  # RFC 6455 section 5.4
    pair.server.send_message("one")
    pair.server.send_message(b"two")
    assert pair.to_client() == [TextMessage(data="one"), BytesMessage(data=b"two")]


def test_the_size_limit_counts_whole_messages_and_characters() -> None:
    pair = Pair(max_message_size=6)
    assert pair.to_server(TextMessage(data="é" * 6)) == [Message("é" * 6)]  # 12 bytes, 6 chars
    parts = [TextMessage(data="abc", message_finished=False), TextMessage(data="def")]
    assert pair.to_server(*parts) == [Message("abcdef")]  # the count starts again
    over = [TextMessage(data="abcd", message_finished=False), TextMessage(data="efg")]
    assert pair.to_server(*over) == [Failed(1009, "message over 6 bytes")]
    assert pair.to_server(TextMessage(data="late")) == []  # behind our Close: dropped
    assert pair.to_client() == [CloseConnection(code=1009, reason="message over 6 bytes")]
    assert pair.server.closed == (1009, "message over 6 bytes")
    with pytest.raises(ConnectionClosed) as info:
        pair.server.send_message("x")
    assert info.value.code == 1009


def test_a_compression_bomb_is_inflated_in_slices() -> None:
    pair = Pair(deflate=True, max_message_size=2**20)
    bomb = bytes(32 * 2**20)  # 32 MiB of zeros: about 32 KiB deflated
    wire = pair.client.send(BytesMessage(data=bomb))
    del bomb
    assert len(wire) < 64 * 1024
    tracemalloc.start()
    try:
        events = pair.server.receive_data(wire)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == [Failed(1009, f"message over {2**20} bytes")]
    assert peak < 24 * 2**20  # about 12 MiB in slices, whatever the bomb; 96 MiB in one go


class CountingDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, counting the bytes it inflates."""

    inflated = 0

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> Any:
        out = super().frame_inbound_payload_data(proto, data)
        if isinstance(out, bytes | bytearray):
            self.inflated += len(out)
        return out


@pytest.mark.parametrize("fragments", [1, 8])
def test_inflating_stops_once_a_message_passes_the_limit(fragments: int) -> None:
    limit = 2**20
    pair = Pair(deflate=True, max_message_size=limit)
    counting = CountingDeflate()
    assert pair.agreed.extensions is not None and counting.accept(pair.agreed.extensions)
    pair.server = WebSocketProtocol([counting], limit)
    piece = bytes(32 * 2**20 // fragments)  # 32 MiB of zeros in all: about 32 KiB deflated
    wire = b"".join(
        pair.client.send(BytesMessage(data=piece, message_finished=i == fragments - 1))
        for i in range(fragments)
    )
    events = pair.server.receive_data(wire + pair.client.send(CloseConnection(code=1000)))
    assert events == [Failed(1009, f"message over {limit} bytes")]
    # At most one slice (4 KiB, deflate inflates about 1032 times) past the limit; the rest of
    # the message, and the peer's Close behind it, are not inflated: input is dropped.
    assert counting.inflated <= limit + 1032 * INFLATE_STEP


# -- control frames and closing -------------------------------------------------------------------


def test_pings_are_answered_and_a_pong_settles_earlier_pings() -> None:
    pair = Pair()
    assert pair.to_server(Ping(payload=b"hi")) == []
    assert pair.to_client() == [ClientPong(payload=b"hi")]  # RFC 6455 section 5.5.3
    pair.server.send_ping(b"a")
    pair.server.send_ping(b"b")
    assert pair.to_client() == [Ping(payload=b"a"), Ping(payload=b"b")]
    assert pair.to_server(ClientPong(payload=b"zz")) == []  # unsolicited: ignored
    assert pair.to_server(ClientPong(payload=b"b")) == [Pong((b"a", b"b"))]
    assert pair.to_server(ClientPong(payload=b"a")) == []  # already settled


def test_the_peers_close_is_echoed() -> None:
    pair = Pair()
    events = pair.to_server(TextMessage(data="last"), CloseConnection(code=4000, reason="bye"))
    assert events == [Message("last"), Closed(4000, "bye")]
    assert pair.to_client() == [CloseConnection(code=4000, reason="bye")]  # section 5.5.1
    assert pair.server.closed == (4000, "bye")
    with pytest.raises(ConnectionClosed) as info:
        pair.server.send_ping(b"")
    assert (info.value.code, info.value.reason) == (4000, "bye")


def test_our_close_waits_for_the_peers() -> None:
    pair = Pair()
    assert pair.server.close(1001, "away")
    assert not pair.server.close(1000, "again")  # joins: nothing more is sent
    crossing = pair.client.send(TextMessage(data="in flight"))
    assert pair.to_client() == [CloseConnection(code=1001, reason="away")]
    assert pair.server.receive_data(crossing) == []  # data behind our Close is dropped
    assert pair.to_server(CloseConnection(code=1001)) == [Closed(1001, "")]
    assert pair.server.closed == (1001, "away")
    assert pair.server.data_to_send() == b""


def test_an_end_without_close_is_1006() -> None:
    pair = Pair()
    assert pair.server.receive_data(None) == [Closed(1006, "")]
    assert pair.server.error().code == 1006
    pair = Pair()
    pair.server.connection_lost()
    assert pair.server.closed == (1006, "connection lost")
    pair = Pair()
    pair.to_server(CloseConnection(code=1000))
    pair.server.connection_lost()
    assert pair.server.closed == (1000, "")  # the first close code stays


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x81\x02hi", 1002),  # unmasked (RFC 6455 section 5.1)
        (b"\x81\x82\x00\x00\x00\x00\xff\xfe", 1007),  # text that is not UTF-8 (8.1)
    ],
)
def test_a_broken_frame_fails_the_connection(frame: bytes, code: int) -> None:
    pair = Pair()
    events = pair.server.receive_data(frame)
    assert len(events) == 1 and isinstance(events[0], Failed) and events[0].code == code
    assert pair.to_server(TextMessage(data="more"), CloseConnection(code=1000)) == []
    assert pair.server.receive_data(None) == []  # nothing more is parsed: the caller waits
    (close,) = pair.to_client()
    assert isinstance(close, CloseConnection) and close.code == code
    assert pair.server.closed is not None and pair.server.closed[0] == code


def test_a_broken_frame_after_our_close() -> None:
    pair = Pair()
    pair.server.close(1000, "")
    assert pair.server.receive_data(b"\x81\x02hi") == [BrokenAfterClose()]


def test_input_in_slices_gives_the_same_events() -> None:
    pair = Pair(deflate=True)
    wire = b"".join(pair.client.send(TextMessage(data=f"m{i}" * 3000)) for i in range(3))
    events = [e for i in range(0, len(wire), 7) for e in pair.server.receive_data(wire[i : i + 7])]
    assert events == [Message(f"m{i}" * 3000) for i in range(3)]
