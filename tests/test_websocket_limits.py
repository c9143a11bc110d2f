"""WebSocket limits on real sockets: back-pressure against a peer that floods Pings and never
reads (HTTP/1.1 and HTTP/2), and the keep-alive Pings (``ping_interval``, ``ping_timeout``).

The misbehaving peers are raw sockets framed by wsproto's client (HTTP/1.1) or the h2 client
of tests.test_websocket_h2 (HTTP/2); the well-behaved one is the ``websockets`` client.
Handlers report through a ``queue.Queue`` read with a timeout. A flood runs until the client's
send blocks for a second (the server stopped reading) or its cap is sent; the server's write
buffer is read on the server's loop thread (``Running.call``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import inspect
import queue
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping, TextMessage

from prefork import websocket
from tests.conftest import run_async
from tests.test_websocket import FakeStream, handshake, plain_page, read_head, request
from tests.test_websocket_h2 import Client

TIMEOUT = 10
BLOCKED = 1.0  # a send blocked this long: the server no longer reads
# What the server may buffer for a peer that does not read: asyncio's 64 KiB high-water mark
# plus the Pongs of one read (256 KiB of Pings), with room to spare.
BOUND = 2**20


def holding_server(seen: queue.Queue, **options: Any) -> Any:
    """Report the accepted WebSocket itself (for its transport), echo, report the end."""

    async def onstream(server: Any, stream: Any) -> None:
        req = await stream.get_headers()
        if req.get(":method") != "CONNECT" and req.get(":path") != "/ws":
            await plain_page(stream)
            return
        ws = await websocket.new_from_stream(stream, req, compression=False, **options)
        async with ws:
            await ws.accept()
            seen.put(ws)
            async for message in ws:
                await ws.send(message)
        seen.put(("closed", ws.close_code, ws.close_reason))

    return onstream


def pings(count: int) -> bytes:
    """``count`` masked Pings of 125 bytes each (RFC 6455 section 5.5), as a client sends."""
    framer = Connection(ConnectionType.CLIENT)
    return b"".join(framer.send(Ping(payload=b"p" * 125)) for _ in range(count))


def buffered(running: Any, ws: Any) -> int:
    return running.call(lambda: ws.transport.get_write_buffer_size())


def get_page(running: Any, ctx: ssl.SSLContext | None) -> bytes:
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection(running.host, running.port, timeout=TIMEOUT)
    else:
        conn = http.client.HTTPSConnection(running.host, running.port, timeout=TIMEOUT, context=ctx)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    finally:
        conn.close()


@pytest.fixture
def h2client() -> Iterator[Callable[[Any], Client]]:
    made: list[Client] = []

    def make(running: Any) -> Client:
        made.append(Client(running))
        return made[-1]

    yield make
    for c in made:
        c.close()


# -- back-pressure --------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True])
def test_a_ping_flood_that_never_reads_is_not_read(serve, tls: bool) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(holding_server(seen), tls=tls)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the client reads nothing
    sock.settimeout(TIMEOUT)
    sock.connect((running.host, running.port))
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(handshake())
        head, _ = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        ws = seen.get(timeout=TIMEOUT)
        block = pings(512)  # 67 KB in, 65 KB of Pongs out
        sent = 0
        sock.settimeout(BLOCKED)
        with contextlib.suppress(TimeoutError):
            while sent < 32 * 2**20:  # 32 MiB: more than the kernel's buffers hold
                sock.sendall(block)
                sent += len(block)
        assert buffered(running, ws) < BOUND  # not 30 MiB of Pongs
        assert get_page(running, ctx) == b"plain\n"  # the server serves others meanwhile
    assert seen.get(timeout=TIMEOUT)[:2] == ("closed", 1006)


def test_over_http2_a_ping_flood_that_gives_no_window_is_not_read(serve, h2client) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(holding_server(seen))
    c = h2client(running)
    c.ack = False  # no WINDOW_UPDATE: the Pongs cannot leave, they stay in the H2Tunnel
    sid, _ = c.open_ws()
    ws = seen.get(timeout=TIMEOUT)
    block = pings(120)  # 15.7 KB: one DATA frame
    room = lambda _: c.conn.local_flow_control_window(sid) >= len(block)  # noqa: E731
    sent = 0
    c.sock.settimeout(BLOCKED)
    with contextlib.suppress(TimeoutError):
        while sent < 4 * 2**20:  # the server stops reading, so it stops giving window back
            c.wait(room, "window")
            c.conn.send_data(sid, block)
            c.flush()
            sent += len(block)
    assert sent < 4 * 2**20
    assert buffered(running, ws) < BOUND
    other = h2client(running)
    assert other.response(other.get("/"))[1] == b"plain\n"
    c.conn.reset_stream(sid)  # heard by the tunnel's writer, which waits for window
    c.flush()
    assert seen.get(timeout=TIMEOUT)[:2] == ("closed", 1006)


# -- keep-alive -----------------------------------------------------------------------------------


class RawClient:
    """A raw socket after the handshake; wsproto frames what it sends and reads, one event at
    a time. It answers nothing by itself."""

    def __init__(self, running: Any) -> None:
        self.sock = running.connect(TIMEOUT)
        try:
            self.sock.sendall(handshake())
            head, rest = read_head(self.sock)
            assert head.startswith(b"HTTP/1.1 101 "), head
        except BaseException:
            self.sock.close()
            raise
        self.framer = Connection(ConnectionType.CLIENT)
        self.framer.receive_data(rest)
        self.pending: deque[Any] = deque()

    def next_event(self) -> Any:
        """The next event from the server; None once it has closed the connection."""
        while not self.pending:
            self.pending.extend(self.framer.events())
            if self.pending:
                break
            data = self.sock.recv(65536)
            if not data:
                return None
            self.framer.receive_data(data)
        return self.pending.popleft()

    def send(self, event: Any) -> None:
        self.sock.sendall(self.framer.send(event))


def test_a_peer_that_does_not_answer_pings_is_closed_1011(serve) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(holding_server(seen, ping_interval=0.2, ping_timeout=0.2))
    start = time.monotonic()
    raw = RawClient(running)
    with raw.sock:
        assert isinstance(raw.next_event(), Ping)  # never answered
        assert raw.next_event() == CloseConnection(code=1011, reason="keepalive ping timeout")
        assert raw.next_event() is None  # then the server drops the connection
    assert 0.4 <= time.monotonic() - start < 5
    assert isinstance(seen.get(timeout=TIMEOUT), websocket.WebSocket)
    assert seen.get(timeout=TIMEOUT) == ("closed", 1011, "keepalive ping timeout")
    assert get_page(running, None) == b"plain\n"


def test_a_peer_that_answers_pings_stays_open(serve) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(holding_server(seen, ping_interval=0.1, ping_timeout=0.2))
    raw = RawClient(running)
    with raw.sock:
        for _ in range(5):  # five intervals, more than twice the timeout
            ping = raw.next_event()
            assert isinstance(ping, Ping)
            raw.send(ping.response())
        raw.send(TextMessage(data="still here"))
        while isinstance(event := raw.next_event(), Ping):
            raw.send(event.response())
        assert event == TextMessage(data="still here")
        raw.send(CloseConnection(code=1000))
        while isinstance(event := raw.next_event(), Ping):
            pass
        assert event == CloseConnection(code=1000, reason="")
    seen.get(timeout=TIMEOUT)
    assert seen.get(timeout=TIMEOUT) == ("closed", 1000, "")


def test_a_websockets_client_stays_open_across_intervals(serve) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(holding_server(seen, ping_interval=0.1, ping_timeout=0.5))

    async def client() -> Any:
        # The client's own pings are off: only the server's keep-alive runs, and the client
        # answers it by itself.
        uri = f"ws://{running.host}:{running.port}/ws"
        async with connect(uri, ping_interval=None) as c:
            await asyncio.sleep(1.0)  # the time under test (ten intervals), not a synchronisation
            await c.send("still here")
            return await c.recv()

    assert run_async(client()) == "still here"
    seen.get(timeout=TIMEOUT)
    assert seen.get(timeout=TIMEOUT) == ("closed", 1000, "")


def test_a_handler_that_does_not_read_does_not_time_the_peer_out(serve) -> None:
    """16 unread messages stop the reading: the peer's Pongs wait behind them, which is not the
    peer's fault, so the Pong's deadline waits too."""
    seen: queue.Queue = queue.Queue()
    go = threading.Event()

    async def onstream(server: Any, stream: Any) -> None:
        ws = await websocket.new_from_stream(
            stream, await stream.get_headers(), ping_interval=0.1, ping_timeout=0.2
        )
        async with ws:
            await ws.accept()
            await asyncio.get_running_loop().run_in_executor(None, go.wait, TIMEOUT)
            for _ in range(20):
                await ws.send(await ws.receive())
        seen.put(("closed", ws.close_code, ws.close_reason))

    running = serve(onstream)
    raw = RawClient(running)
    with raw.sock:
        for i in range(20):
            raw.send(TextMessage(data=f"m{i}"))
        ping = raw.next_event()
        assert isinstance(ping, Ping)
        raw.send(ping.response())  # it waits behind the messages: the server reads no more
        raw.sock.settimeout(BLOCKED)  # five times ping_timeout: long past the Pong's deadline
        with pytest.raises(TimeoutError):
            raw.next_event()  # no Close 1011 (nor another Ping before that Pong is read)
        raw.sock.settimeout(TIMEOUT)
        go.set()
        echoes = []
        while len(echoes) < 20:
            event = raw.next_event()
            if isinstance(event, Ping):
                raw.send(event.response())
            else:
                assert isinstance(event, TextMessage), event
                echoes.append(event.data)
        assert echoes == [f"m{i}" for i in range(20)]
        while isinstance(event := raw.next_event(), Ping):
            pass
        assert event == CloseConnection(code=1000, reason="")
        raw.send(event.response())
    assert seen.get(timeout=TIMEOUT) == ("closed", 1000, "")


def test_over_http2_a_silent_peer_is_closed_1011(serve, h2client) -> None:
    seen: queue.Queue = queue.Queue()
    running = serve(holding_server(seen, ping_interval=0.2, ping_timeout=0.2))
    c = h2client(running)
    sid, _ = c.open_ws()
    assert isinstance(c.receive(sid), Ping)
    assert c.receive(sid) == CloseConnection(code=1011, reason="keepalive ping timeout")
    c.wait(lambda _: c.ended(sid), "the end of the stream")
    seen.get(timeout=TIMEOUT)
    assert seen.get(timeout=TIMEOUT) == ("closed", 1011, "keepalive ping timeout")
    assert c.response(c.get("/"))[1] == b"plain\n"  # the connection goes on


def test_keepalive_options() -> None:
    parameters = inspect.signature(websocket.new_from_stream).parameters
    assert parameters["ping_interval"].default == 20.0  # uvicorn's and websockets' defaults
    assert parameters["ping_timeout"].default == 20.0
    for options in ({"ping_interval": 0}, {"ping_timeout": -1.0}):
        with pytest.raises(ValueError):
            run_async(websocket.new_from_stream(FakeStream(1.1), request(), **options))
    ws = run_async(
        websocket.new_from_stream(FakeStream(1.1), request(), ping_interval=None, ping_timeout=None)
    )
    assert isinstance(ws, websocket.WebSocket)
