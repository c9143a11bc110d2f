"""WebSocket over HTTP/2 (RFC 8441) on real sockets.

The client is h2's client connection (tests.test_http2's :class:`Raw`, over a blocking socket
with a timeout, prior knowledge or TLS with ALPN h2) sending an extended CONNECT; after the
``200``, wsproto's post-handshake :class:`~wsproto.connection.Connection` in client mode
frames the WebSocket messages that travel in the stream's DATA frames. Handlers report how
they ended through a ``queue.Queue`` read with a timeout: nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import queue
import ssl
from collections import deque
from typing import Any

import h2.events as ev
import h2.settings
import pytest
from h2.errors import ErrorCodes
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate

from prefork import websocket
from tests.conftest import Running
from tests.helpers import websocket_echo
from tests.test_http2 import Raw, h2_context
from tests.tls_helpers import each_engine

TIMEOUT = 10


class Client(Raw):
    """h2 client that opens WebSockets with extended CONNECT and speaks wsproto inside."""

    def __init__(self, running: Running, sock: Any = None, scheme: str = "http") -> None:
        super().__init__(running, sock=sock)
        self.scheme = scheme
        self.fed: dict[int, int] = {}  # per stream: events already looked at
        self.pending: dict[int, deque[Event]] = {}  # per stream: wsproto events not returned
        self.ws: dict[int, Connection] = {}

    def connect_ws(self, path: str = "/ws", **fields: str) -> int:
        """Send an extended CONNECT; ``fields`` (sec_websocket_* names) add or, "", remove."""
        # the server's SETTINGS must be in before :protocol may be sent (RFC 8441 section 4)
        self.wait(lambda _: self.conn.remote_settings.enable_connect_protocol, "SETTINGS")
        headers = {
            ":method": "CONNECT",
            ":protocol": "websocket",
            ":scheme": self.scheme,
            ":path": path,
            ":authority": "localhost",
            "sec-websocket-version": "13",
        }
        headers.update({k.replace("_", "-"): v for k, v in fields.items()})
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(k, v) for k, v in headers.items() if v])
        self.flush()
        return sid

    def head(self, sid: int) -> dict[str, str]:
        def found(events: list[Any]) -> Any:
            return next(
                (e for e in events if isinstance(e, ev.ResponseReceived) and e.stream_id == sid),
                None,
            )

        return dict(self.wait(found, "response") and found(self.events).headers)

    def open_ws(self, path: str = "/ws", **fields: str) -> tuple[int, dict[str, str]]:
        sid = self.connect_ws(path, **fields)
        head = self.head(sid)
        assert head[":status"] == "200", head
        self.ws[sid] = Connection(ConnectionType.CLIENT)
        return sid, head

    def send(self, sid: int, event: Event) -> None:
        data = self.ws[sid].send(event)
        size = self.conn.max_outbound_frame_size
        for i in range(0, len(data), size):  # small messages: within the 65535 window
            self.conn.send_data(sid, data[i : i + size])
        self.flush()

    def receive(self, sid: int) -> Event:
        """The next wsproto event on stream ``sid`` (its DATA fed in order as it arrives)."""
        ws = self.ws[sid]
        pending = self.pending.setdefault(sid, deque())

        def ready(events: list[Any]) -> bool:
            for e in events[self.fed.get(sid, 0) :]:
                if ws.state is ConnectionState.CLOSED:
                    break
                if isinstance(e, ev.DataReceived) and e.stream_id == sid:
                    ws.receive_data(e.data)
                elif isinstance(e, ev.StreamEnded | ev.StreamReset) and e.stream_id == sid:
                    ws.receive_data(None)
                pending.extend(ws.events())  # each time: an end after a Close is no 1006
            self.fed[sid] = len(events)
            return bool(pending)

        self.wait(ready, "a WebSocket event")
        return pending.popleft()

    def ended(self, sid: int) -> bool:
        return any(
            isinstance(e, ev.StreamEnded | ev.StreamReset) and e.stream_id == sid
            for e in self.events
        )


@pytest.fixture
def client():
    made: list[Client] = []

    def make(running: Running, **kw: Any) -> Client:
        c = Client(running, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_connect_protocol_is_advertised(serve, client) -> None:
    running = serve(websocket_echo(queue.Queue()))
    c = client(running)
    c.wait(lambda es: any(isinstance(e, ev.RemoteSettingsChanged) for e in es), "SETTINGS")
    changed = next(e for e in c.events if isinstance(e, ev.RemoteSettingsChanged))
    code = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
    assert changed.changed_settings[code].new_value == 1


def test_echo_text_binary_subprotocol_and_client_close(serve, client) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(websocket_echo(seen, protocols=("chat", "superchat")))
    c = client(running)
    sid, head = c.open_ws(sec_websocket_protocol="other, superchat, chat")
    assert head["sec-websocket-protocol"] == "superchat"
    assert "sec-websocket-accept" not in head and "upgrade" not in head
    assert seen.get(timeout=TIMEOUT) == ("accepted", "superchat", None)
    c.send(sid, TextMessage(data="héllo"))
    assert c.receive(sid) == TextMessage(data="héllo")
    c.send(sid, BytesMessage(data=b"\x00\xff" * 15000))  # more than one DATA frame
    got = b""
    while len(got) < 30000:
        event = c.receive(sid)
        assert isinstance(event, BytesMessage)
        got += event.data
    assert got == b"\x00\xff" * 15000
    c.send(sid, CloseConnection(code=4000, reason="bye"))
    event = c.receive(sid)
    assert isinstance(event, CloseConnection) and (event.code, event.reason) == (4000, "bye")
    assert seen.get(timeout=TIMEOUT) == ("closed", 4000, "bye")
    c.wait(lambda _: c.ended(sid), "the end of the stream")


def test_server_close_and_pings_both_ways(serve, client) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(websocket_echo(seen))
    c = client(running)
    sid, head = c.open_ws()
    assert "sec-websocket-protocol" not in head
    c.send(sid, Ping(payload=b"p1"))
    assert c.receive(sid) == Pong(payload=b"p1")
    c.send(sid, TextMessage(data="server-ping"))
    assert c.receive(sid) == Ping(payload=b"abc")
    c.send(sid, Pong(payload=b"abc"))
    assert c.receive(sid) == TextMessage(data="pong received")
    c.send(sid, TextMessage(data="server-close"))
    event = c.receive(sid)
    assert isinstance(event, CloseConnection) and (event.code, event.reason) == (4001, "done")
    c.send(sid, event.response())
    assert c.ws[sid].state is ConnectionState.CLOSED
    c.conn.end_stream(sid)
    c.flush()
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT) == ("closed", 4001, "done")
    c.wait(lambda _: c.ended(sid), "the end of the stream")


def test_other_streams_go_on_beside_a_websocket(serve, client) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(websocket_echo(seen))
    c = client(running)
    sid, _ = c.open_ws()
    other = c.get("/")
    headers, body = c.response(other)
    assert (headers[":status"], body) == ("200", b"plain\n")
    second, _ = c.open_ws()  # two WebSockets on one connection
    c.send(second, TextMessage(data="two"))
    c.send(sid, TextMessage(data="one"))
    assert c.receive(sid) == TextMessage(data="one")
    assert c.receive(second) == TextMessage(data="two")
    headers, body = c.response(c.get("/"))
    assert body == b"plain\n"
    for s in (sid, second):
        c.send(s, CloseConnection(code=1000))
        assert isinstance(c.receive(s), CloseConnection)
    assert (
        sorted(seen.get(timeout=TIMEOUT)[0] for _ in range(4)) == ["accepted"] * 2 + ["closed"] * 2
    )


def test_a_reset_stream_ends_the_websocket(serve, client) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(websocket_echo(seen))
    c = client(running)
    sid, _ = c.open_ws()
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    c.conn.reset_stream(sid)
    c.flush()
    assert seen.get(timeout=TIMEOUT)[:2] == ("closed", 1006)
    _headers, body = c.response(c.get("/"))  # the connection is fine
    assert body == b"plain\n"


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"sec_websocket_version": "8"}, 426),
        ({"sec_websocket_version": ""}, 400),
        ({":protocol": "chat"}, 400),
    ],
)
def test_bad_handshakes_are_refused(serve, client, fields: dict[str, str], status: int) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(websocket_echo(seen))
    c = client(running)
    sid = c.connect_ws(**fields)
    headers, _body = c.response(sid)
    assert headers[":status"] == str(status)
    assert seen.get(timeout=TIMEOUT) == ("refused", status)
    if status == 426:
        assert headers["sec-websocket-version"] == "13"
        assert "upgrade" not in headers and "connection" not in headers


def test_a_plain_connect_is_no_websocket(serve, client) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(websocket_echo(seen))
    c = client(running)
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.com:443")])
    c.flush()
    headers, _ = c.response(sid)
    assert headers[":status"] == "400"
    assert seen.get(timeout=TIMEOUT) == ("refused", 400)


@each_engine
def test_over_tls_with_alpn_h2(serve, client, tls_engine: str) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(websocket_echo(seen), tls=True, ctx=h2_context(tls_engine))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(running.connect(TIMEOUT), server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
    c = client(running, sock=sock, scheme="https")
    sid, _ = c.open_ws()
    c.send(sid, TextMessage(data="over tls"))
    assert c.receive(sid) == TextMessage(data="over tls")
    c.send(sid, CloseConnection(code=1001))
    assert isinstance(c.receive(sid), CloseConnection)
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT) == ("closed", 1001, "")


def test_a_vanishing_client_ends_receive(serve, client) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(websocket_echo(seen))
    c = client(running)
    c.open_ws()
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    c.close()
    assert seen.get(timeout=TIMEOUT)[:2] == ("closed", 1006)
    other = client(running)
    _, body = other.response(other.get("/"))
    assert body == b"plain\n"


def test_send_waits_while_the_client_gives_no_window(serve, client) -> None:
    seen: queue.Queue = queue.Queue()
    block = b"x" * 16384

    async def onstream(server: Any, stream: Any) -> None:
        ws = await websocket.new_from_stream(stream, await stream.get_headers(), compression=False)
        async with ws:
            await ws.accept()
            sent = 0
            try:
                while sent < 1000:  # 16 MiB: far more than the flow-control windows allow
                    await asyncio.wait_for(ws.send(block), 1)
                    sent += 1
            except TimeoutError:
                seen.put(sent)  # blocked: back-pressure
            with pytest.raises(websocket.ConnectionClosed):  # the client hangs up
                await ws.receive(timeout=TIMEOUT)
            seen.put("receive ended")

    running = serve(onstream)
    c = client(running)
    c.ack = False  # no WINDOW_UPDATE: the server's send window stays shut
    c.open_ws()
    sent = seen.get(timeout=TIMEOUT)
    assert 0 < sent < 1000
    c.close()
    assert seen.get(timeout=TIMEOUT) == "receive ended"


def test_permessage_deflate(serve, client) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(websocket_echo(seen))
    c = client(running)
    sid = c.connect_ws(sec_websocket_extensions="permessage-deflate; client_max_window_bits")
    head = c.head(sid)
    assert head[":status"] == "200"
    agreed = head["sec-websocket-extensions"]
    assert agreed.startswith("permessage-deflate")
    deflate = PerMessageDeflate()
    deflate.finalize(agreed)
    c.ws[sid] = Connection(ConnectionType.CLIENT, [deflate])
    text = "squeeze me " * 2000
    c.send(sid, TextMessage(data=text))
    assert c.receive(sid) == TextMessage(data=text)
    c.send(sid, CloseConnection(code=1000))
    assert isinstance(c.receive(sid), CloseConnection)
    assert seen.get(timeout=TIMEOUT) == ("accepted", None, agreed)
    assert seen.get(timeout=TIMEOUT) == ("closed", 1000, "")


def test_close_gives_up_on_a_silent_peer_with_rst_stream_cancel(serve, client) -> None:
    seen: queue.Queue = queue.Queue()

    async def onstream(server: Any, stream: Any) -> None:
        ws = await websocket.new_from_stream(stream, await stream.get_headers(), close_timeout=0.2)
        await ws.accept()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ws.close(1001, "going away")
        seen.put(loop.time() - start)

    running = serve(onstream)
    c = client(running)
    sid, _ = c.open_ws()
    assert c.receive(sid) == CloseConnection(code=1001, reason="going away")  # never answered
    c.wait(lambda _: c.ended(sid), "the reset")
    reset = next(e for e in c.events if isinstance(e, ev.StreamReset) and e.stream_id == sid)
    assert reset.error_code == ErrorCodes.CANCEL
    # 1 ms less allowed: uvloop's timers (libuv's) have a resolution of 1 ms
    assert 0.199 <= seen.get(timeout=TIMEOUT) < 5


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, ("203.0.113.7", "https")),  # loopback is a trusted proxy by default
        ({"forwarded_allow_ips": "10.0.0.1"}, ("127.0.0.1", "http")),  # an untrusted peer
    ],
    ids=["trusted", "untrusted"],
)
def test_forwarded_headers_on_an_extended_connect(serve, client, options, expected) -> None:
    """A WebSocket opened over HTTP/2 behind a proxy sees the client the proxy names (RFC 8441
    streams go through the same forwarded-header step as any request), and only from a
    trusted peer."""
    seen: queue.Queue = queue.Queue()

    async def onstream(server: Any, stream: Any) -> None:
        req = await stream.get_headers()
        seen.put((stream.peername()[1], req.get(":scheme")))
        ws = await websocket.new_from_stream(stream, req)
        async with ws:
            await ws.accept()
            async for message in ws:
                await ws.send(message)

    running = serve(onstream, **options)
    c = client(running)
    sid, _ = c.open_ws(x_forwarded_for="6.6.6.6, 203.0.113.7", x_forwarded_proto="https")
    assert seen.get(timeout=TIMEOUT) == expected
    c.send(sid, TextMessage(data="through"))
    assert c.receive(sid) == TextMessage(data="through")
    c.send(sid, CloseConnection(code=1000))
    assert isinstance(c.receive(sid), CloseConnection)
