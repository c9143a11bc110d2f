"""WebSocket limits on real sockets: back-pressure against a peer that floods Pings and never
reads (HTTP/1.1 and HTTP/2), and the keep-alive Pings (``ping_interval``, ``ping_timeout``).

The misbehaving peers are raw sockets framed by wsproto's client (HTTP/1.1) or the h2 client
of tests.test_websocket_h2 (HTTP/2); the well-behaved one is the ``websockets`` client.
Handlers report through a ``queue.Queue`` read with a timeout. A flood runs until the client's
send blocks for a second (the server stopped reading) or its cap is sent; the server's write
buffer is read on the server's loop thread (``Running.call``).
"""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Ping

from prefork import websocket
from tests.test_websocket import handshake, plain_page, read_head
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
