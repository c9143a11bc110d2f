"""WebSocket (prefork.websocket) on real sockets: the ``websockets`` client, raw sockets for bad
handshakes and misbehaving peers, and the pure handshake check.

Servers are ``serve(...)`` fixtures on 127.0.0.1 port 0 (their loop runs in a thread); clients
run on a fresh loop in the test's thread. Handlers report what they saw through a
``queue.Queue`` that the test reads with a timeout: nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import importlib.util
import os
import queue
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect, unix_connect
from websockets.exceptions import ConnectionClosed as ClientClosed
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from prefork import websocket
from prefork.errors import StreamStateError
from prefork.headers import Headers
from tests.conftest import run_async
from tests.helpers import plain_page, read_response, websocket_echo
from tests.tls_helpers import each_engine

KEY = base64.b64encode(b"0123456789abcdef").decode()
TIMEOUT = 10


def handshake(path: str = "/ws", **fields: str) -> bytes:
    """A raw handshake request; ``fields`` override (or, set to "", remove) the defaults."""
    headers = {
        "Host": "localhost",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    method = fields.pop("method", "GET")
    version = fields.pop("version", "HTTP/1.1")
    headers.update({name.replace("_", "-"): value for name, value in fields.items()})
    lines = [f"{method} {path} {version}"] + [f"{n}: {v}" for n, v in headers.items() if v]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def echo_server(serve: Any, protocols: tuple[str, ...] = (), **options: Any) -> tuple[Any, Any]:
    seen: queue.Queue = queue.Queue()
    extra = Headers([("set-cookie", "session=1"), (":status", "200")])  # pseudo: ignored
    running = serve(websocket_echo(seen, protocols, extra, **options))
    return running, seen


def url(running: Any, path: str = "/ws") -> str:
    return f"ws://{running.host}:{running.port}{path}"


def get_plain(running: Any) -> bytes:
    conn = http.client.HTTPConnection(running.host, running.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/")
        res = conn.getresponse()
        assert res.status == 200
        return res.read()
    finally:
        conn.close()


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


# -- the websockets client ------------------------------------------------------------------------


def test_echo_text_and_binary_with_subprotocol_and_compression(serve) -> None:
    running, seen = echo_server(serve, protocols=("chat", "superchat"))

    async def client() -> Any:
        async with connect(url(running), subprotocols=["other", "superchat", "chat"]) as c:
            await c.send("héllo")
            text = await c.recv()
            await c.send(b"\x00\x01\xff")
            data = await c.recv()
            return c.subprotocol, c.response.headers, text, data

    protocol, headers, text, data = run_async(client())
    assert (text, data) == ("héllo", b"\x00\x01\xff")
    assert protocol == "superchat"  # the client's first choice that the server speaks
    assert headers["Set-Cookie"] == "session=1"
    assert headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    kind, chosen, extensions = seen.get(timeout=TIMEOUT)
    assert (kind, chosen) == ("accepted", "superchat")
    assert extensions.startswith("permessage-deflate")
    assert seen.get(timeout=TIMEOUT) == ("closed", 1000, "")
    assert get_plain(running) == b"plain\n"


def test_no_common_subprotocol_and_compression_off(serve) -> None:
    running, seen = echo_server(serve, protocols=("chat",), compression=False)

    async def client() -> Any:
        async with connect(url(running), subprotocols=["other"], compression=None) as c:
            await c.send("x")
            extensions = c.response.headers.get("Sec-WebSocket-Extensions")
            return await c.recv(), c.subprotocol, extensions

    assert run_async(client()) == ("x", None, None)
    assert seen.get(timeout=TIMEOUT) == ("accepted", None, None)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_large_and_fragmented_messages(serve, compression: str | None) -> None:
    running, seen = echo_server(serve, max_message_size=4 * 2**20)
    blob = os.urandom(1_000_000)  # incompressible: 1 MB on the wire either way
    text = "é" * 500_000

    async def client() -> list[Any]:
        got = []
        async with connect(url(running), compression=compression, max_size=4 * 2**20) as c:
            for message in (blob, text):
                await c.send(message)
                got.append(await c.recv())
            await c.send([b"ab", b"cd", b"ef"])  # one message in three frames (RFC 6455 5.4)
            got.append(await c.recv())
            await c.send(["x" * 70_000, "y", "z" * 10])
            got.append(await c.recv())
        return got

    assert run_async(client()) == [blob, text, b"abcdef", "x" * 70_000 + "y" + "z" * 10]
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT) == ("closed", 1000, "")


def test_ping_pong_both_ways(serve) -> None:
    running, _ = echo_server(serve)

    async def client() -> Any:
        async with connect(url(running), ping_interval=None) as c:
            latency = await asyncio.wait_for(await c.ping(b"client"), TIMEOUT)
            await c.send("server-ping")  # the server pings; the client answers by itself
            return latency, await c.recv()

    latency, reply = run_async(client())
    assert latency >= 0
    assert reply == "pong received"


def test_client_closes_with_a_code(serve) -> None:
    running, seen = echo_server(serve)

    async def client() -> Any:
        async with connect(url(running)) as c:
            await c.send("one")
            assert await c.recv() == "one"
            await c.close(4000, "bye")
            return c.close_code

    assert run_async(client()) == 4000  # the server echoes the client's Close (RFC 6455 5.5.1)
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT) == ("closed", 4000, "bye")


def test_server_closes_with_a_code(serve) -> None:
    running, seen = echo_server(serve)

    async def client() -> Any:
        async with connect(url(running)) as c:
            await c.send("server-close")
            with pytest.raises(ClientClosed):
                await c.recv()
            return c.close_code, c.close_reason

    assert run_async(client()) == (4001, "done")
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT) == ("closed", 4001, "done")
    assert get_plain(running) == b"plain\n"


def test_message_over_the_limit_closes_1009(serve) -> None:
    running, seen = echo_server(serve, max_message_size=1000)

    async def client() -> Any:
        async with connect(url(running)) as c:
            await c.send("small")
            assert await c.recv() == "small"
            await c.send(os.urandom(5000))
            with pytest.raises(ClientClosed):
                await c.recv()
            return c.close_code

    assert run_async(client()) == 1009  # RFC 6455 section 7.4.1
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT)[:2] == ("closed", 1009)
    assert get_plain(running) == b"plain\n"


# -- raw sockets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"method": "POST"}, 400),
        ({"version": "HTTP/1.0"}, 400),
        ({"Upgrade": ""}, 400),
        ({"Upgrade": "h2c"}, 400),
        ({"Connection": "keep-alive"}, 400),
        ({"Sec-WebSocket-Key": ""}, 400),
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, 400),  # 5 bytes, not 16
        ({"Sec-WebSocket-Key": "not base64!!not base64!!"}, 400),
        ({"Sec-WebSocket-Version": ""}, 400),
        ({"Sec-WebSocket-Version": "8"}, 426),
    ],
)
def test_bad_handshakes_are_refused(serve, fields: dict[str, str], status: int) -> None:
    running, seen = echo_server(serve)
    with running.connect() as sock:
        sock.sendall(handshake(**fields))
        response = read_response(sock)
    head = response.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 %d " % status)
    if status == 426:  # RFC 6455 section 4.4: say which version the server speaks
        assert b"\r\nsec-websocket-version: 13" in head
        assert b"\r\nupgrade: websocket" in head
    assert seen.get(timeout=TIMEOUT) == ("refused", status)
    assert get_plain(running) == b"plain\n"


def test_frames_sent_behind_the_request_head(serve) -> None:
    running, seen = echo_server(serve, compression=False)
    client = Connection(ConnectionType.CLIENT)
    with running.connect() as sock:
        sock.sendall(handshake() + client.send(TextMessage(data="early")))
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 4.2.2 item 5.4
        assert fields[b"sec-websocket-accept"] == base64.b64encode(
            hashlib.sha1(KEY.encode() + guid).digest()
        )
        client.receive_data(rest)
        while not (events := list(client.events())):
            client.receive_data(sock.recv(65536))
        assert events == [TextMessage(data="early")]
        sock.sendall(client.send(CloseConnection(code=1000)))
        assert read_response(sock)  # the server's Close, then the server closes first
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT) == ("closed", 1000, "")


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_vanishing_client_ends_receive(serve, how: str) -> None:
    running, seen = echo_server(serve)
    sock = running.connect()
    with sock:
        sock.sendall(handshake())
        head, _ = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert seen.get(timeout=TIMEOUT)[0] == "accepted"
        if how == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
    assert seen.get(timeout=TIMEOUT)[:2] == ("closed", 1006)
    assert get_plain(running) == b"plain\n"


def test_close_gives_up_on_a_silent_peer_after_the_close_timeout(serve) -> None:
    seen: queue.Queue = queue.Queue()

    async def onstream(server: Any, stream: Any) -> None:
        ws = await websocket.new_from_stream(stream, await stream.get_headers(), close_timeout=0.2)
        await ws.accept()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ws.close(1001, "going away")
        seen.put(loop.time() - start)
        with pytest.raises(websocket.ConnectionClosed) as info:
            await ws.send("late")
        seen.put(info.value.code)

    running = serve(onstream)
    client = Connection(ConnectionType.CLIENT)
    with running.connect() as sock:
        sock.sendall(handshake())
        _, rest = read_head(sock)
        client.receive_data(rest + read_response(sock))  # never answers; the server hangs up
        assert list(client.events()) == [CloseConnection(code=1001, reason="going away")]
    # 1 ms less allowed: uvloop's timers (libuv's) have a resolution of 1 ms
    assert 0.199 <= seen.get(timeout=TIMEOUT) < 5
    assert seen.get(timeout=TIMEOUT) == 1001


def test_send_waits_while_the_client_does_not_read(serve) -> None:
    seen: queue.Queue = queue.Queue()
    block = b"x" * 65536

    async def onstream(server: Any, stream: Any) -> None:
        req = await stream.get_headers()
        if req.get(":path") != "/ws":
            await plain_page(stream)
            return
        ws = await websocket.new_from_stream(stream, req, compression=False)
        async with ws:
            await ws.accept()
            sent = 0
            try:
                while sent < 1000:  # 64 MiB: far more than the kernel buffers hold
                    await asyncio.wait_for(ws.send(block), 1)
                    sent += 1
            except TimeoutError:
                seen.put(sent)  # blocked: back-pressure
            with pytest.raises(websocket.ConnectionClosed):  # the client hangs up
                await ws.receive(timeout=TIMEOUT)
            seen.put("receive ended")

    running = serve(onstream)
    with running.connect() as sock:
        sock.sendall(handshake())
        read_head(sock)
        sent = seen.get(timeout=TIMEOUT)
        assert 0 < sent < 1000
    assert seen.get(timeout=TIMEOUT) == "receive ended"
    assert get_plain(running) == b"plain\n"


@each_engine
def test_over_tls(serve) -> None:
    """wss:// works: the TLS connection's transport is handed over, not its socket."""
    seen: queue.Queue = queue.Queue()
    running = serve(websocket_echo(seen), tls=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    async def client() -> Any:
        uri = f"wss://{running.host}:{running.port}/ws"
        async with connect(uri, ssl=ctx, max_size=4 * 2**20) as c:
            await c.send("over tls")
            text = await c.recv()
            await c.send(b"\x00" * 2**20)
            data = await c.recv()
            return text, len(data)

    assert run_async(client()) == ("over tls", 2**20)
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT)[0] == "closed"


# -- without a server -----------------------------------------------------------------------------


def request(**fields: str) -> Headers:
    h = Headers()
    h.append(":method", fields.pop("method", "GET"))
    for name, value in [
        ("host", "x"),
        ("upgrade", "WebSocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-key", KEY),
        ("sec-websocket-version", "13"),
    ]:
        value = fields.pop(name.replace("-", "_"), value)
        if value:
            h.append(name, value)
    return h


def test_check_request_rules() -> None:
    assert websocket.check_request(request(), 1.1) == KEY  # tokens are case-insensitive
    for fields, version, status in [
        ({"host": ""}, 1.1, 400),
        ({}, 1.0, 400),
        ({"sec_websocket_version": "13, 8"}, 1.1, 426),
        ({"sec_websocket_key": KEY[:-2]}, 1.1, 400),
    ]:
        with pytest.raises(websocket.HandshakeError) as info:
            websocket.check_request(request(**fields), version)
        assert info.value.status == status


class FakeStream:
    def __init__(self, version: float) -> None:
        self.connection = type("C", (), {"version": version})()
        self.peer_version = 1.1

    def checktls(self) -> None:
        return None


def test_accept_comes_first() -> None:
    ws = run_async(websocket.new_from_stream(FakeStream(1.1), request()))
    with pytest.raises(StreamStateError):
        run_async(ws.receive())
    with pytest.raises(ValueError):
        run_async(ws.close(1006))


def connect_request(**fields: str) -> Headers:
    """An HTTP/2 extended CONNECT (RFC 8441 section 4); ``fields`` override, "" removes."""
    values = {
        ":method": "CONNECT",
        ":protocol": "websocket",
        ":scheme": "https",
        ":path": "/ws",
        ":authority": "localhost",
        "sec-websocket-version": "13",
    }
    values.update({n.replace("_", "-"): v for n, v in fields.items()})
    return Headers([(n, v) for n, v in values.items() if v])


def test_check_connect_rules() -> None:
    websocket.check_connect(connect_request())
    websocket.check_connect(connect_request(**{":protocol": "WebSocket"}))
    for fields, status in [
        ({":method": "GET"}, 400),
        ({":protocol": ""}, 400),
        ({":protocol": "h3"}, 400),
        ({":authority": ""}, 400),
        ({"sec_websocket_version": ""}, 400),
        ({"sec_websocket_version": "8"}, 426),
    ]:
        with pytest.raises(websocket.HandshakeError) as info:
            websocket.check_connect(connect_request(**fields))
        assert info.value.status == status, fields


def test_the_example_echo_server(serve) -> None:
    spec = importlib.util.spec_from_file_location(
        "websocket_echo", Path(__file__).parent.parent / "examples" / "websocket_echo.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    running = serve(example.onstream)

    async def client() -> Any:
        async with connect(url(running), subprotocols=["echo"]) as c:
            await c.send("hi")
            return c.subprotocol, await c.recv()

    assert run_async(client()) == ("echo", "hi")
    conn = http.client.HTTPConnection(running.host, running.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/")
        res = conn.getresponse()
        assert (res.status, res.getheader("content-type")) == (200, "text/html; charset=utf-8")
        assert b"new WebSocket(" in res.read()
    finally:
        conn.close()


def test_a_compression_bomb_closes_1009(serve) -> None:
    running, seen = echo_server(serve, max_message_size=2**20)
    bomb = bytes(64 * 2**20)  # 64 MiB of zeros: about 64 KiB once deflated

    async def client() -> Any:
        async with connect(url(running), max_size=None) as c:
            assert c.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            await c.send(bomb)
            with pytest.raises(ClientClosed):
                await c.recv()
            return c.close_code

    assert run_async(client()) == 1009
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT)[:2] == ("closed", 1009)


def test_an_unmasked_client_frame_is_a_protocol_error(serve) -> None:
    running, seen = echo_server(serve)
    client = Connection(ConnectionType.CLIENT)
    with running.connect() as sock:
        sock.sendall(handshake())
        _, rest = read_head(sock)
        sock.sendall(b"\x81\x02hi")  # RFC 6455 section 5.1: clients must mask every frame
        client.receive_data(rest)
        while not (events := list(client.events())):
            client.receive_data(sock.recv(65536))
        assert isinstance(events[0], CloseConnection) and events[0].code == 1002
        sock.sendall(client.send(events[0].response()))
        read_response(sock)  # then the server closes
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT)[:2] == ("closed", 1002)
    assert get_plain(running) == b"plain\n"


def test_over_a_unix_socket(serve, tmp_path: Path) -> None:
    seen: queue.Queue = queue.Queue()
    path = str(tmp_path / "ws.sock")
    serve(websocket_echo(seen), path=path)

    async def client() -> Any:
        async with unix_connect(path, "ws://localhost/ws") as c:
            await c.send("over unix")
            return await c.recv()

    assert run_async(client()) == "over unix"
    assert seen.get(timeout=TIMEOUT)[0] == "accepted"
    assert seen.get(timeout=TIMEOUT) == ("closed", 1000, "")
