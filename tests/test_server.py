"""The server API, after lua-http's spec/server_spec.lua: options, the family x version matrix,
pause/resume, close, onerror, taking the socket, intra_stream_timeout, external main loops."""

from __future__ import annotations

import asyncio
import http.client
import math
import os
import select
import socket
import stat
import threading
import time

import pytest

import prefork.server
from prefork.headers import Headers

from .conftest import hello, response_headers, run_async
from .helpers import read_response, wait_until


async def noop(server, stream):
    await stream.get_headers()


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def request(version: str = "1.1", path: str = "/", extra: str = "") -> bytes:
    host = "Host: x\r\n" if version == "1.1" else ""
    return f"GET {path} HTTP/{version}\r\n{host}{extra}\r\n".encode()


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "names"),
    [
        ({}, ValueError, "onstream"),
        ({"onstream": noop, "bogus": 1}, TypeError, "bogus"),
        ({"onstream": lambda s, st: None}, TypeError, "onstream"),
        ({"onstream": noop, "cq": 5}, TypeError, "cq"),
        ({"onstream": noop, "socket": 5}, TypeError, "socket"),
        ({"onstream": noop, "tls": "yes"}, TypeError, "tls"),
        ({"onstream": noop, "version": 3}, ValueError, "version"),
        ({"onstream": noop, "version": True}, ValueError, "version"),
        (
            {"onstream": noop, "connection_setup_timeout": -1},
            ValueError,
            "connection_setup_timeout",
        ),
        ({"onstream": noop, "intra_stream_timeout": "10"}, TypeError, "intra_stream_timeout"),
        ({"onstream": noop, "max_concurrent": 0}, ValueError, "max_concurrent"),
        ({"onstream": noop, "max_header_count": 1.5}, TypeError, "max_header_count"),
        ({"onstream": noop, "onerror": 3}, TypeError, "onerror"),
        ({"onstream": noop, "ctx": object()}, TypeError, "ctx"),
        ({"onstream": noop, "host": "127.0.0.1"}, TypeError, "host"),
    ],
)
def test_new_rejects_bad_options(options, error, names):
    with pytest.raises(error, match=names):
        prefork.server.new(**options)


@pytest.mark.parametrize(
    ("options", "error", "names"),
    [
        ({"port": 0}, ValueError, "host"),
        ({"host": "127.0.0.1", "tls": None}, ValueError, "port"),
        ({"host": "127.0.0.1", "port": 70000}, ValueError, "port"),
        ({"host": "127.0.0.1", "port": "80"}, TypeError, "port"),
        ({"host": "127.0.0.1", "port": 0, "family": "AF_BOGUS"}, ValueError, "family"),
        ({"host": "127.0.0.1", "port": 0, "family": socket.AF_UNIX}, ValueError, "family"),
        ({"path": "/tmp/x", "mode": "rwx"}, ValueError, "mode"),
        ({"path": "/tmp/x", "mask": True}, ValueError, "mask"),
        ({"host": "127.0.0.1", "port": 0, "reuseport": 1}, TypeError, "reuseport"),
        ({"host": "127.0.0.1", "port": 0, "socket": socket.socket}, TypeError, "socket"),
    ],
)
def test_listen_rejects_bad_options(options, error, names):
    with pytest.raises(error, match=names):
        prefork.server.listen(onstream=noop, **options)


def test_listen_port_defaults_follow_tls():
    server = prefork.server.listen(host="127.0.0.1", tls=False, onstream=noop)
    assert server._bind.port == 80
    server.close()


def test_repr_and_onerror_getter():
    a, b = socket.socketpair()
    with a, b:
        server = prefork.server.new(socket=a, tls=False, onstream=noop)
        assert repr(server).startswith("prefork.Server(")
        handler = server.onerror()
        assert callable(handler)
        assert server.onerror() is handler

        def mine(*args):
            return None

        assert server.onerror(mine) is handler
        assert server.onerror() is mine
        with pytest.raises(TypeError):
            server.onerror(5)
        server.close()


# -- the lua-http matrix --------------------------------------------------------------------


FAMILIES = [
    pytest.param("AF_INET", id="inet"),
    pytest.param(
        "AF_INET6",
        id="inet6",
        marks=pytest.mark.skipif(not ipv6_available(), reason="IPv6 loopback (::1) not available"),
    ),
    pytest.param("AF_UNIX", id="unix"),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("server_version", [None, 1.0, 1.1])
@pytest.mark.parametrize("client_version", ["1.0", "1.1"])
def test_simple_exchange(serve, tmp_path, family, server_version, client_version):
    seen = []

    async def onstream(server, stream):
        headers = await stream.get_headers()
        seen.append((headers.get(":method"), stream.peer_version, stream.connection.version))
        await stream.shutdown()
        server.close()

    if family == "AF_UNIX":
        running = serve(
            onstream, path=str(tmp_path / "s.sock"), unlink=True, version=server_version
        )
    else:
        host = "::1" if family == "AF_INET6" else "127.0.0.1"
        running = serve(onstream, host=host, family=family, version=server_version)
    assert running.family == getattr(socket, family)
    with running.connect() as sock:
        sock.sendall(request(client_version))
        response = read_response(sock)
    expected = "1.0" if server_version == 1.0 else "1.1"
    assert response.startswith(f"HTTP/{expected} 503 ".encode()), response
    assert seen == [("GET", float(client_version), server_version or 1.1)]
    running.thread.join(10)
    assert not running.thread.is_alive(), "loop() should return once the closed server is empty"
    assert running.server.empty()
    assert running.errors == []
    if family == "AF_UNIX":
        assert not (tmp_path / "s.sock").exists(), "close() removes the socket file it made"


def test_taking_the_socket_from_the_connection():
    got = []

    async def onstream(server, stream):
        sock, data = await stream.connection.take_socket()
        server.close()
        loop = asyncio.get_running_loop()
        while chunk := await loop.sock_recv(sock, 4096):
            data += chunk
        await loop.sock_sendall(sock, b"taken:" + data)
        sock.close()
        got.append(data)

    server = prefork.server.new(tls=False, onstream=onstream)
    s, c = socket.socketpair()
    with c:
        server.add_socket(s)
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: custom\r\nConnection: upgrade\r\n\r\ntes")
        c.sendall(b"t")
        c.shutdown(socket.SHUT_WR)
        server.loop(10)
        c.settimeout(5)
        assert read_response(c) == b"taken:test"
    assert got == [b"test"]
    assert server.empty()


def test_intra_stream_timeout_closes_idle_connections():
    server = prefork.server.new(tls=False, onstream=hello, intra_stream_timeout=0.3)
    s, c = socket.socketpair()
    thread = threading.Thread(target=server.loop, args=(15,), daemon=True)
    with c:
        server.add_socket(s)
        thread.start()
        c.settimeout(10)
        for _ in range(2):  # requests in quick succession keep the connection
            c.sendall(request())
            assert c.recv(4096).startswith(b"HTTP/1.1 200 ")
        idle_since = time.monotonic()
        assert c.recv(4096) == b"", "idle connection should be closed by the server"
        waited = time.monotonic() - idle_since
    assert 0.25 <= waited < 5
    thread.join(10)
    assert not thread.is_alive()
    assert server.empty()
    server.close()


def test_connection_setup_timeout_closes_silent_clients(serve):
    running = serve(connection_setup_timeout=0.2)
    with running.connect() as sock:
        started = time.monotonic()
        assert sock.recv(4096) == b""
        assert time.monotonic() - started < 5


def test_pause_and_resume(serve):
    running = serve()

    def ask(timeout):
        sock = running.connect()
        sock.settimeout(timeout)
        sock.sendall(request(extra="Connection: close\r\n"))
        return sock

    for _ in range(2):
        running.call(running.server.pause)
        with ask(0.3) as waiting:
            with pytest.raises(TimeoutError):  # paused: connection sits in the backlog
                waiting.recv(4096)
            running.call(running.server.resume)
            waiting.settimeout(10)
            assert read_response(waiting).startswith(b"HTTP/1.1 200 ")
        with ask(10) as sock:
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")


def test_pause_keeps_live_connections(serve):
    running = serve()
    with running.connect() as sock:
        sock.sendall(request())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        running.call(running.server.pause)
        sock.sendall(request())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    assert running.thread.is_alive(), "a paused server keeps looping"


def test_max_concurrent_holds_extra_clients_in_the_backlog(serve):
    running = serve(max_concurrent=1)
    with running.connect() as first:
        first.sendall(request())
        assert first.recv(4096).startswith(b"HTTP/1.1 200 ")
        with running.connect() as second:
            second.settimeout(0.3)
            second.sendall(request(extra="Connection: close\r\n"))
            with pytest.raises(TimeoutError):
                second.recv(4096)
            first.close()
            second.settimeout(10)
            assert read_response(second).startswith(b"HTTP/1.1 200 ")


def test_close_is_graceful(serve):
    release = threading.Event()

    async def slow(server, stream):
        await stream.get_headers()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        await stream.write_headers(response_headers(content_length="2"), False)
        await stream.write_chunk(b"ok", True)

    running = serve(slow)
    with running.connect() as idle, running.connect() as busy:
        idle.sendall(b"")  # connected, no request: idle
        busy.sendall(request())

        # wait until the busy request is inside the handler
        def in_handler():
            return any(c._stream for c in running.server._host.connections)

        wait_until(lambda: running.call(in_handler), what="the handler")
        running.call(running.server.close)
        assert idle.recv(4096) == b"", "idle connection closed at once"
        release.set()
        response = read_response(busy)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in response
    assert response.endswith(b"ok")
    running.thread.join(10)
    assert not running.thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((running.host, running.port), timeout=5).close()


def test_methods_after_close_do_not_fail():
    server = prefork.server.listen(host="127.0.0.1", port=0, onstream=noop)
    server.listen()
    server.close()
    server.listen()
    assert server.localname() == (socket.AF_UNSPEC,)
    assert server.empty()
    server.step(0)
    server.loop(0)
    server.pause()
    server.resume()
    server.close()
    a, b = socket.socketpair()
    with b:
        assert server.add_socket(a) is False
        assert a.fileno() == -1


def test_listen_after_close_without_listening_first():
    server = prefork.server.listen(host="localhost", port=0, onstream=noop)
    server.close()
    server.listen()
    server.localname()


# -- errors ---------------------------------------------------------------------------------


def test_default_onerror_raises_from_loop(serve):
    async def broken(server, stream):
        await stream.get_headers()
        raise LookupError("handler bug")

    running = serve(broken)
    with running.connect() as sock:
        sock.sendall(request())
        assert sock.recv(4096).startswith(b"HTTP/1.1 500 ")
    running.thread.join(10)
    assert not running.thread.is_alive()
    assert len(running.errors) == 1
    assert isinstance(running.errors[0], LookupError)


def test_onerror_handler_receives_op_and_context(serve):
    calls = []

    async def broken(server, stream):
        await stream.get_headers()
        raise LookupError("handler bug")

    running = serve(broken, onerror=lambda *args: calls.append(args))
    for _ in range(2):
        with running.connect() as sock:
            sock.sendall(request())
            assert sock.recv(4096).startswith(b"HTTP/1.1 500 ")
    server, context, op, err, errno = running.call(lambda: calls[0])
    assert server is running.server
    assert op == "onstream"
    assert isinstance(err, LookupError)
    assert errno is None
    assert hasattr(context, "get_headers")
    assert running.thread.is_alive()


def test_step_raises_handler_errors():
    async def broken(server, stream):
        await stream.get_headers()
        raise KeyError("boom")

    server = prefork.server.new(tls=False, onstream=broken)
    s, c = socket.socketpair()
    with c:
        server.add_socket(s)
        c.sendall(request())
        deadline = time.monotonic() + 10
        with pytest.raises(KeyError):
            while time.monotonic() < deadline:
                server.step(0.1)
    server.close()
    server.loop(5)
    assert server.empty()


# -- external main loops -------------------------------------------------------------------


def test_external_poll_loop_drives_the_server():
    # loop="asyncio": the loop with a pollable fd (uvloop has none: pollfd() is then None)
    server = prefork.server.listen(
        host="127.0.0.1",
        port=0,
        tls=False,
        onstream=hello,
        intra_stream_timeout=0.3,
        loop="asyncio",
    )
    server.listen()
    _, host, port = server.localname()
    stop = threading.Event()
    timeouts = []

    def drive():
        poller = select.poll()
        poller.register(server.pollfd(), select.POLLIN)
        assert server.events() == "r"
        while not stop.is_set():
            wait = server.timeout()
            timeouts.append(wait)
            # The cap only lets the thread see `stop`; the server's own deadline comes first.
            wait_ms = 100 if wait is None else min(100, math.ceil(wait * 1000))
            poller.poll(wait_ms)
            server.step(0)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        for _ in range(3):
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"Hello world!\n"
        sock = conn.sock
        started = time.monotonic()
        assert sock.recv(1) == b"", "the idle timer fired under the external loop"
        assert time.monotonic() - started < 5
        conn.close()
        assert any(t is not None and 0 < t <= 0.3 for t in timeouts)
    finally:
        stop.set()
        thread.join(10)
    server.close()
    while not server.empty():
        server.step(0.1)
    assert server.pollfd() is None or isinstance(server.pollfd(), int)


def test_pollfd_is_readable_when_a_client_connects():
    server = prefork.server.listen(
        host="127.0.0.1", port=0, tls=False, onstream=hello, loop="asyncio"
    )
    server.listen()
    _, host, port = server.localname()
    fd = server.pollfd()
    assert isinstance(fd, int)
    assert select.select([fd], [], [], 0)[0] == []
    with socket.create_connection((host, port), timeout=5):
        assert select.select([fd], [], [], 5)[0] == [fd]
    server.close()
    server.loop(5)


# -- asyncio programs ----------------------------------------------------------------------


def test_serve_inside_a_running_loop():
    async def main():
        server = prefork.server.listen(host="127.0.0.1", port=0, tls=False, onstream=hello)
        task = asyncio.create_task(server.serve())
        await asyncio.sleep(0)
        return await one_request_then_close(server, task)

    assert run_async(main()).startswith(b"HTTP/1.1 200 ")


async def one_request_then_close(server, task):
    """One request with Connection: close to a serving server, then close it; the response."""
    _, host, port = server.localname()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request(extra="Connection: close\r\n"))
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    server.close()
    await task
    return response


def test_serve_refuses_another_loop():
    other = asyncio.new_event_loop()
    try:
        server = prefork.server.listen(
            host="127.0.0.1", port=0, onstream=hello, tls=False, cq=other
        )

        async def main():
            with pytest.raises(RuntimeError, match="another event loop"):
                await server.serve()

        run_async(main())
        server.close()
    finally:
        other.close()


# -- listening options -----------------------------------------------------------------------


def test_unix_socket_mode_mask_and_unlink(tmp_path):
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    with pytest.raises(OSError):
        prefork.server.listen(path=str(path), onstream=noop).listen()
    server = prefork.server.listen(
        path=str(path), unlink=True, mode=0o600, mask=True, onstream=noop
    )
    server.listen()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert server.localname() == (socket.AF_UNIX, str(path))
    server.close()
    assert not path.exists()


def test_unlink_never_removes_a_regular_file(tmp_path):
    path = tmp_path / "data"
    path.write_text("precious")
    server = prefork.server.listen(path=str(path), unlink=True, onstream=noop)
    with pytest.raises(OSError):
        server.listen()
    assert path.read_text() == "precious"
    server.close()


def test_reuseport_lets_two_servers_share_a_port():
    one = prefork.server.listen(host="127.0.0.1", port=0, reuseport=True, onstream=noop, tls=False)
    one.listen()
    port = one.localname()[2]
    two = prefork.server.listen(
        host="127.0.0.1", port=port, reuseport=True, onstream=noop, tls=False
    )
    two.listen()
    assert two.localname()[2] == port
    one.close()
    two.close()


def test_port_in_use_raises_from_listen():
    one = prefork.server.listen(host="127.0.0.1", port=0, onstream=noop, tls=False)
    one.listen()
    two = prefork.server.listen(host="127.0.0.1", port=one.localname()[2], onstream=noop, tls=False)
    with pytest.raises(OSError) as info:
        two.listen()
    assert info.value.errno == 98  # EADDRINUSE
    one.close()
    two.close()


def test_new_with_an_already_listening_socket(serve):
    listener = socket.create_server(("127.0.0.1", 0))
    server = prefork.server.new(socket=listener, tls=False, onstream=hello)
    thread = threading.Thread(target=server.loop, args=(15,), daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"Hello world!\n"
        conn.close()
    finally:
        loop = server._loop
        loop.call_soon_threadsafe(server.close)
        thread.join(10)
    assert not thread.is_alive()


# -- back-pressure ---------------------------------------------------------------------------


def test_unread_body_back_pressures_then_arrives_whole(serve):
    size = 8 * 1024 * 1024
    gate = threading.Event()

    async def late_reader(server, stream):
        await stream.get_headers()
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        body = await stream.get_body_as_string()
        h = Headers()
        h.append(":status", "200")
        await stream.write_headers(h, False)
        await stream.write_chunk(str(len(body)).encode(), True)

    running = serve(late_reader, max_buffered_body=2 * size)
    with running.connect() as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        sent = 0
        block = b"x" * 65536
        sock.setblocking(False)
        try:
            while sent < size:
                sent += sock.send(block[: size - sent])
        except BlockingIOError:
            pass  # the server stopped reading: the kernel buffers are full
        assert sent < size, "the server should stop reading an unread body"

        def paused():
            conns = running.server._host.connections
            return len(conns) == 1 and not next(iter(conns))._reading

        try:
            wait_until(lambda: running.call(paused), what="the server to pause reading")
            buffered = running.call(
                lambda: next(iter(running.server._host.connections))._stream._buffered
            )
            assert buffered <= 512 * 1024
        finally:
            gate.set()
        sock.settimeout(10)
        sock.sendall(block * ((size - sent) // len(block)) + block[: (size - sent) % len(block)])
        response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(str(size).encode() + b"\r\n0\r\n\r\n")


def test_serve_after_listen_adopts_the_running_loop():
    server = prefork.server.listen(host="127.0.0.1", port=0, tls=False, onstream=hello)
    server.listen()  # bound first, to learn the port: made a private loop

    async def main():
        task = asyncio.create_task(server.serve())
        return await one_request_then_close(server, task)

    assert run_async(main()).startswith(b"HTTP/1.1 200 ")


def test_listen_timeout_bounds_name_resolution():
    server = prefork.server.listen(host="127.0.0.1", port=0, tls=False, onstream=hello)
    server.listen(timeout=5)
    assert server.localname()[2] > 0
    server.close()
