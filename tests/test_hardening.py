"""Issue 9: no input, peer or load crashes a process. Each test fails on the code before its fix."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import subprocess
import sys
import time
import types
from typing import Any

import h2.events as ev
import h2.settings
import httpx
import pytest
from h2.errors import ErrorCodes

from prefork import server as prefork_server
from prefork.errors import ProtocolError
from prefork.stream import Stream
from tests.conftest import read_response, response_headers
from tests.master_helpers import Masters, connect, raw_get, wait_until
from tests.test_http2 import Raw

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def masters(tmp_path):
    with Masters(tmp_path) as started:
        yield started


def test_app_exception_leaves_the_worker_serving(masters) -> None:
    """Item 0: an app raising under the prefork command answers 500, logs the traceback with
    the request line, and the request in flight on the same worker completes."""
    master = masters.start("boom", workers=1)
    with connect(master.address) as slow:
        slow.sendall(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert slow.recv(1024).startswith(b"HTTP/1.1 200"), "the slow request is in flight"
        status, _, _ = raw_get(master.address, "/boom")
        assert status == 500
        status, _, _ = raw_get(master.address, "/boom-late")  # cut off after its head
        assert status == 200
        rest = read_response(slow)
    pid = int(rest.rpartition(b"\r\n\r\n")[2] or rest)
    assert pid == master.workers()[0], "the same worker answered: it did not die"
    status, body, _ = raw_get(master.address, "/")
    assert (status, int(body)) == (200, pid)
    log = master.stderr()
    assert "RuntimeError: boom" in log and "GET /boom" in log, log
    assert "Traceback" in log


@pytest.mark.parametrize("how", ["http1", "h2c", "prior-knowledge"])
def test_access_log_with_every_protocol(masters, how: str) -> None:
    """Item 1: --access-log with HTTP/2 requests (h2c, prior knowledge) logs each request
    and the worker lives (it died of the access logger reading a private field)."""
    master = masters.start("hello", "--access-log", "-", workers=1)
    url = f"http://127.0.0.1:{master.address}/logged-{how}"
    if how == "http1":
        assert httpx.get(url, timeout=10).status_code == 200
    else:
        curl = ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_version}"]
        flag = "--http2" if how == "h2c" else "--http2-prior-knowledge"
        out = subprocess.run([*curl, flag, url], capture_output=True, text=True, timeout=20)
        assert out.stdout == "2", out
    worker = master.workers()[0]

    def access_log() -> str:
        return master.out.read_text(errors="replace")

    wait_until(lambda: f"/logged-{how}" in access_log(), what="the access log line")
    line = next(x for x in access_log().splitlines() if f"/logged-{how}" in x)
    version = "HTTP/1.1" if how == "http1" else "HTTP/2"
    assert f'"GET /logged-{how} {version}" 200 6' in line, line
    assert raw_get(master.address)[0] == 200
    assert master.workers() == [worker], "the worker survived"


def test_grace_for_a_connection_handed_over_during_close() -> None:
    """Item 11: a silent connection given to a server that closes in the same turn gets the
    1 s grace, not the 10 s set-up timeout."""

    async def never(server, stream):
        raise AssertionError("no request was sent")

    srv = prefork_server.new(onstream=never, tls=False)
    a, b = socket.socketpair()
    try:
        srv.add_socket(a)
        srv.close()
        b.settimeout(8)
        started = time.monotonic()
        srv.loop(timeout=8)
        assert srv.empty(), "the connection outlived its grace"
        assert time.monotonic() - started < 5, "closed by the 10 s set-up timeout, not 1 s"
        assert b.recv(1) == b""
    finally:
        b.close()


def test_app_file_named_like_a_stdlib_module(tmp_path) -> None:
    """Item 15: ``json.py:onstream`` loads under a private name; ``json`` stays the stdlib's."""
    script = (
        "import json, sys\n"
        "from prefork.app import load\n"
        "app = load(sys.argv[1])\n"
        "assert sys.modules['json'] is json, 'the app file replaced json'\n"
        "assert app.__module__ != 'json', app.__module__\n"
        "print(json.dumps({'loaded': app.__name__}))\n"
    )
    path = pathlib.Path(__file__).parent / "apps" / "shadow" / "json.py"
    out = subprocess.run(
        [sys.executable, "-c", script, f"{path}:onstream"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '{"loaded": "onstream"}'


# -- item 6: write_timeout ------------------------------------------------------------------------


def writer(outcome: list[Any], file: Any = None) -> Any:
    """A handler that writes until the client's not reading stops it; records how it ended."""

    async def onstream(server: Any, stream: Any) -> None:
        if (await stream.get_headers()).get(":path") == "/ok":
            await stream.write_headers(response_headers(), True)
            return
        await stream.write_headers(response_headers(), False)
        started = time.monotonic()
        try:
            if file is not None:
                await stream.write_body_from_file(file)
            else:
                while time.monotonic() - started < 20:
                    await stream.write_chunk(b"x" * 65536, False)
        except Exception as exc:
            outcome.append((type(exc), time.monotonic() - started))
            raise

    return onstream


def silent_client(running: Any, request: bytes) -> socket.socket:
    sock = running.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(request)
    return sock  # and never reads


@pytest.mark.parametrize("body", ["chunks", "sendfile"])
def test_write_timeout_cuts_off_a_client_that_reads_nothing(serve, tmp_path, body: str) -> None:
    outcome: list[Any] = []
    file = None
    if body == "sendfile":
        path = tmp_path / "big"
        path.write_bytes(b"y" * (64 * 1024 * 1024))
        file = path.open("rb")
    running = serve(writer(outcome, file), write_timeout=0.5)
    try:
        with silent_client(running, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
            wait_until(lambda: outcome, timeout=15, what="the write to be cut off")
            kind, after = outcome[0]
            assert kind is BrokenPipeError and after < 10, outcome
    finally:
        if file is not None:
            file.close()
    assert raw_get(running.port, "/ok")[0] == 200, "the server serves on"
    assert outcome[1:] == [] and running.errors == [], "nothing else failed"


def test_write_timeout_resets_an_http2_stream_without_window(serve) -> None:
    """The client opens no window: that stream is reset (CANCEL), the connection lives."""
    outcome: list[Any] = []

    async def onstream(server: Any, stream: Any) -> None:
        if stream.request_headers.get(":path") == "/ping":
            await stream.write_headers(response_headers("204"), True)
            return
        await writer(outcome)(server, stream)

    running = serve(onstream, write_timeout=0.5)
    client = Raw(running, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    try:
        sid = client.get("/")
        client.wait(lambda es: any(isinstance(e, ev.StreamReset) for e in es), "RST_STREAM")
        reset = next(e for e in client.events if isinstance(e, ev.StreamReset))
        assert (reset.stream_id, reset.error_code) == (sid, ErrorCodes.CANCEL)
        wait_until(lambda: outcome, what="the handler's write to fail")
        assert outcome[0][0] is BrokenPipeError
        ping = client.get("/ping")
        heads, _ = client.response(ping)
        assert heads[":status"] == "204", "the connection serves on"
    finally:
        client.close()


# -- item 7: whole-body reads are bounded, streamed reads are not -------------------------------


async def whole(server: Any, stream: Any) -> None:
    await stream.get_headers()
    body = await stream.get_body_as_string()
    await stream.write_headers(response_headers(), False)
    await stream.write_chunk(str(len(body)).encode(), True)


async def until_end(server: Any, stream: Any) -> None:
    await stream.get_headers()
    body = await stream.get_body_until(b"END")
    await stream.write_headers(response_headers(), False)
    await stream.write_chunk(str(len(body or b"")).encode(), True)


async def streamed(server: Any, stream: Any) -> None:
    await stream.get_headers()
    size = 0
    while (chunk := await stream.get_next_chunk()) is not None:
        size += len(chunk)
    await stream.write_headers(response_headers(), False)
    await stream.write_chunk(str(size).encode(), True)


@pytest.mark.parametrize(("handler", "status"), [(whole, 413), (until_end, 413), (streamed, 200)])
def test_whole_body_reads_have_a_finite_default(serve, handler: Any, status: int) -> None:
    running = serve(handler)
    body = b"z" * (3 * 1024 * 1024)  # over the 2.5 MiB default of max_buffered_body
    with httpx.Client(timeout=30) as client:
        response = client.post(f"http://127.0.0.1:{running.port}/", content=body)
    assert response.status_code == status
    if status == 200:
        assert response.text == str(len(body))


class Feed(Stream):
    """An in-memory stream: a body in given pieces (the body helpers are written once on
    ``_read_chunk``; the protocols are tested elsewhere)."""

    def __init__(self, pieces: list[bytes], limit: int | None) -> None:
        super().__init__()
        self.pieces = list(pieces)
        self.connection = types.SimpleNamespace(max_buffered_body=limit)

    async def _read_chunk(self, timeout: float | None) -> bytes | None:
        return self.pieces.pop(0) if self.pieces else None

    async def get_headers(self, timeout: float | None = None) -> None:
        return None

    async def write_headers(self, headers: Any, end_stream: bool, timeout: Any = None) -> None:
        raise NotImplementedError("not used")

    async def write_chunk(self, data: bytes, end_stream: bool, timeout: Any = None) -> None:
        raise NotImplementedError("not used")

    async def shutdown(self, timeout: float | None = None) -> None:
        raise NotImplementedError("not used")

    def _end(self, status: int) -> None:
        raise NotImplementedError("not used")


def test_get_body_until_is_linear_and_exact() -> None:
    """2 MiB in 1 KiB pieces before the pattern: each piece is searched once (rescanning
    the whole buffer per piece took seconds); a pattern split across pieces is found."""
    pieces = [b"a" * 1024] * 2048 + [b"xxE", b"ND", b"rest"]
    stream = Feed(pieces, None)
    started = time.process_time()
    got = asyncio.run(stream.get_body_until(b"END"))
    assert time.process_time() - started < 2
    assert got == b"a" * (2048 * 1024) + b"xx"
    assert asyncio.run(stream.get_body_as_string()) == b"rest"
    with_pattern = Feed([b"12EN", b"D34"], None)
    assert asyncio.run(with_pattern.get_body_until(b"END", include_pattern=True)) == b"12END"
    regex = Feed([b"ab1", b"23cd"], None)
    assert asyncio.run(regex.get_body_until(rb"\d+", plain=False)) == b"ab"
    limited = Feed([b"a" * 1024] * 8, 4096)
    with pytest.raises(ProtocolError) as info:
        asyncio.run(limited.get_body_until(b"END"))
    assert info.value.status == 413


def test_the_first_body_error_is_the_answer(serve) -> None:
    """A chunk over max_body_size answers 413, even when the bytes after it (read as a size
    line once the parser had failed) would be a 400 of their own."""
    running = serve(whole, max_body_size=10)
    with running.connect() as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n10\r\n" + b"y" * 16 + b"\r\n0\r\n\r\n"
        )
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 413 "), response[:80]


def test_a_header_that_cannot_be_sent_gets_a_500(serve) -> None:
    """A bad field in the response head is the handler's error before the head started."""

    async def bad(server: Any, stream: Any) -> None:
        await stream.get_headers()
        await stream.write_headers(response_headers(x_bad="a\x01b"), True)

    running = serve(bad, onerror=lambda *args: None)
    with running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 500 "), response[:80]
