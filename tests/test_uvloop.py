"""uvloop where its transports differ from asyncio's (issue #13): each test names its loop, so
these run on uvloop in both passes of tools/test (the second pass runs the whole suite on it).

Covered: a socket passed over SCM_RIGHTS and adopted with ``connect_accepted_socket`` (with
``TCP_NODELAY``, its peer and local names from ``get_extra_info``), a worker's signal handlers,
``loop.sendfile`` (uvloop has none: file bodies are copied through the transport),
pause/resume reading (request bodies and pipelining) and writing (``write_timeout``),
``transport.set_protocol`` (the TLS sniff, the HTTP/2 preface, h2c, taking the connection
over), TLS on memory BIOs, ``asyncio.timeout`` in a stream method, and ``max_concurrent``
counting a socket as soon as it is added.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from typing import Any

import httpx
import pytest

import prefork.server
from prefork.aio import loop as aioloop
from tests.conftest import Running, hello, response_headers
from tests.helpers import echo, pattern, read_response, wait_until
from tests.master_helpers import get

uvloop = pytest.importorskip("uvloop")

LOOPS = ["asyncio", "uvloop"]
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_new_loop_makes_each_kind() -> None:
    for kind, module in (("asyncio", "asyncio"), ("uvloop", "uvloop"), ("auto", "uvloop")):
        loop = aioloop.new_loop(kind)
        try:
            assert type(loop).__module__.split(".")[0] == module, (kind, loop)
            assert (aioloop.pollfd(loop) is None) is (module == "uvloop")
        finally:
            loop.close()


# -- a worker under the master: passed sockets, signals -------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_worker_adopts_passed_sockets_on_its_loop(start_master, loop: str) -> None:
    master = start_master("loopinfo", "--loop", loop, workers=1)
    with socket.create_connection(("127.0.0.1", master.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = read_response(sock).partition(b"\r\n\r\n")
        client = list(sock.getsockname())
    assert head.startswith(b"HTTP/1.1 200 ")
    info = json.loads(body)
    assert info["loop"].split(".")[0] == loop, info
    assert info["nodelay"] is True, "delayed ACKs would cost ~40 ms a request"
    assert info["peer"] == client and info["local"] == ["127.0.0.1", master.port], info


def test_worker_term_under_uvloop_finishes_its_request(start_master) -> None:
    """A worker's TERM handler (loop.add_signal_handler on uvloop) closes it gracefully: the
    request in flight completes, then the master replaces the worker."""
    master = start_master("slow", "--loop", "uvloop", "--graceful-timeout", "8", workers=1)
    (worker,) = master.wait_workers(1)
    with socket.create_connection(("127.0.0.1", master.port), timeout=10) as sock:
        sock.sendall(b"GET /?ms=800 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(12) == b"HTTP/1.1 200"  # the head first: the request is in the worker
        os.kill(worker, signal.SIGTERM)
        assert read_response(sock).endswith(b"slept 800\n")
    replacement = wait_until(lambda: set(master.wait_workers(1)) - {worker}, 10, "a new worker")
    assert replacement and get(master.port)[0] == 200


# -- the transport: sendfile, back-pressure -------------------------------------------------------


def file_writer(path: Any, done: list[int]) -> Any:
    async def onstream(server: Any, stream: Any) -> None:
        await stream.get_headers()
        with open(path, "rb") as f:
            h = response_headers("200", content_length=str(os.fstat(f.fileno()).st_size))
            await stream.write_headers(h, False)
            await stream.write_body_from_file(f)
            done.append(f.tell())

    return onstream


def test_file_bodies_without_loop_sendfile(serve, tmp_path) -> None:
    """uvloop has no loop.sendfile: the file goes through the transport, in pieces that wait
    for a client that reads slowly, and the framing after it is exact (two on a connection)."""
    data = pattern(3 * 1024 * 1024 + 17)
    path = tmp_path / "payload"
    path.write_bytes(data)
    done: list[int] = []
    running = serve(file_writer(path, done), loop="uvloop")
    with running.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(GET + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.2)  # not a synchronisation: a pause that lets the server's buffer fill
        raw = read_response(sock, 16 * 1024 * 1024)
    first, rest = raw.split(b"\r\n\r\n", 1)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest[: len(data)] == data
    second, body = rest[len(data) :].split(b"\r\n\r\n", 1)
    assert second.startswith(b"HTTP/1.1 200 ") and body == data
    assert done == [len(data), len(data)]


@pytest.mark.parametrize("body", ["chunks", "file"])
def test_write_timeout_under_uvloop(serve, tmp_path, body: str) -> None:
    """pause_writing arms the write deadline: a client that reads nothing is cut off."""
    outcome: list[type[BaseException]] = []
    path = tmp_path / "big"
    path.write_bytes(b"y" * (32 * 1024 * 1024))

    async def onstream(server: Any, stream: Any) -> None:
        await stream.get_headers()
        await stream.write_headers(response_headers("200"), False)
        try:
            if body == "file":
                with open(path, "rb") as f:
                    await stream.write_body_from_file(f)
            else:
                while True:
                    await stream.write_chunk(b"x" * 65536, False)
        except Exception as exc:
            outcome.append(type(exc))
            raise

    running = serve(onstream, write_timeout=0.5, loop="uvloop")
    with running.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(GET)  # and never reads
        wait_until(lambda: outcome, 15, "the write to be cut off")
    assert outcome == [BrokenPipeError]
    assert running.errors == []


def test_request_body_back_pressure_under_uvloop(serve) -> None:
    """A handler that reads slowly: reading pauses (pause_reading) and resumes; every byte
    arrives in order, and no more than about HIGH_WATER is held for it."""
    data = pattern(4 * 1024 * 1024)
    held: list[int] = []
    got: list[bytes] = []

    async def onstream(server: Any, stream: Any) -> None:
        await stream.get_headers()
        parts = []
        while (chunk := await stream.get_next_chunk()) is not None:
            parts.append(chunk)
            held.append(stream._buffered)
            await asyncio.sleep(0.002)
        got.append(b"".join(parts))
        await stream.write_headers(response_headers("204"), True)

    running = serve(onstream, loop="uvloop")
    with running.connect() as sock:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data)
        sock.sendall(head + data)
        assert sock.recv(100).startswith(b"HTTP/1.1 204 ")
    assert got == [data]
    assert max(held) <= 512 * 1024, max(held)


def test_pipelined_requests_under_uvloop(serve) -> None:
    """300 KB of pipelined requests in one write: reading pauses past PIPELINE_LIMIT and
    resumes; every request is answered, in order."""
    requests = b"".join(
        b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n%s" % (i, b"z" * 1000)
        for i in range(300)
    )
    running = serve(echo, loop="uvloop")
    with running.connect() as sock:
        sock.sendall(requests + b"GET /end HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = read_response(sock, 64 * 1024 * 1024)
    paths = [line.split(b": ")[1] for line in raw.split(b"\r\n") if line.startswith(b"x-path")]
    assert paths == [b"/%d" % i for i in range(300)] + [b"/end"]


# -- set_protocol: sniffing, HTTP/2, taking the connection over; TLS ------------------------------


def test_sniffing_port_hands_over_under_uvloop(serve) -> None:
    """tls=None: the sniff hands the transport to TLS or plaintext (set_protocol), and the
    HTTP/1 connection hands it to HTTP/2 on the preface or an h2c upgrade."""
    running = serve(echo, tls=None, loop="uvloop")
    url = f"{running.url}/p"
    with httpx.Client(timeout=10) as client:
        assert client.get(url).headers["x-tls"] == "no"
    with httpx.Client(timeout=10, verify=False) as client:
        r = client.get(url.replace("http:", "https:"))
        assert (r.headers["x-tls"], r.http_version) == ("yes", "HTTP/1.1")
    with httpx.Client(timeout=10, verify=False, http1=False, http2=True) as client:
        assert client.get(url.replace("http:", "https:")).http_version == "HTTP/2"
        assert client.get(url).http_version == "HTTP/2"  # prior knowledge: the preface
    with socket.create_connection((running.host, running.port), timeout=10) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 101 ")


def test_tls_on_memory_bios_under_uvloop(serve) -> None:
    running = serve(echo, tls=True, loop="uvloop")
    url = f"https://{running.host}:{running.port}/t"
    body = pattern(300_000)
    for http2 in (False, True):
        with httpx.Client(timeout=10, verify=False, http2=http2) as client:
            r = client.post(url, content=body)
            assert r.content == body and r.headers["x-tls"] == "yes"


def test_take_socket_and_transport_under_uvloop(serve) -> None:
    """take_socket dups the fd behind uvloop's pseudo-socket; take_transport hands the
    transport to another protocol (set_protocol)."""

    class Upper(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data.upper())

    async def onstream(server: Any, stream: Any) -> None:
        if (await stream.get_headers()).get(":path") == "/socket":
            sock, data = await stream.connection.take_socket()
            loop = asyncio.get_running_loop()
            with sock:
                while len(data) < 10:
                    data += await loop.sock_recv(sock, 100)
                await loop.sock_sendall(sock, data)
        else:
            await stream.write_headers(response_headers("101", upgrade="upper"), False)
            assert await stream.connection.take_transport(Upper()) == b""

    running = serve(onstream, loop="uvloop")
    with running.connect() as sock:
        sock.sendall(b"GET /socket HTTP/1.1\r\nHost: x\r\n\r\nearly+")
        sock.sendall(b"late")
        assert read_response(sock) == b"early+late"
    with running.connect() as sock:
        sock.sendall(b"GET /transport HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1000)
        assert head.startswith(b"HTTP/1.1 101 ") and head.endswith(b"\r\n\r\n"), head
        sock.sendall(b"late")
        assert sock.recv(100) == b"LATE"


# -- timeouts and max_concurrent ------------------------------------------------------------------


def test_stream_timeouts_under_uvloop(serve) -> None:
    """A stream method's timeout is asyncio.timeout in the handler's task, on uvloop too."""
    seen: list[str] = []

    async def onstream(server: Any, stream: Any) -> None:
        await stream.get_headers()
        try:
            await stream.get_next_chunk(timeout=0.2)
        except TimeoutError:
            seen.append("timeout")
        await stream.write_headers(response_headers("204"), True)

    running = serve(onstream, loop="uvloop")
    with running.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 204 ")
    assert seen == ["timeout"]


@pytest.mark.parametrize("loop", LOOPS)
def test_max_concurrent_counts_a_socket_as_soon_as_it_is_added(serve, loop: str) -> None:
    """Two clients waiting in the backlog, one accept batch: with max_concurrent=1 the second
    waits, although the first one's set-up (a task) has not ended when it is accepted."""
    running: Running = serve(hello, max_concurrent=1, loop=loop)
    running.call(running.server.pause)
    first, second = running.connect(), running.connect()
    with first, second:
        running.call(running.server.resume)
        first.sendall(GET)
        assert first.recv(100).startswith(b"HTTP/1.1 200 ")
        second.settimeout(0.3)
        second.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with pytest.raises(TimeoutError):
            second.recv(100)
        first.close()
        second.settimeout(10)
        assert read_response(second).startswith(b"HTTP/1.1 200 ")


def test_library_loop_option(serve) -> None:
    """loop= picks the kind of loop the server makes (uvloop's has no pollfd); cq= wins."""
    running = serve(hello, loop="uvloop")
    assert isinstance(running.server._loop, uvloop.Loop)
    assert running.server.pollfd() is None
    with running.connect() as sock:
        sock.sendall(GET)
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
    own = asyncio.SelectorEventLoop()
    try:
        server = prefork.server.new(onstream=hello, cq=own, loop="uvloop")
        assert server.pollfd() == aioloop.pollfd(own) is not None
    finally:
        own.close()
