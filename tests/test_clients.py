"""Real clients against a real server: http.client, httpx, curl and raw sockets.

Each test starts a server on 127.0.0.1 port 0 (or a Unix socket) through conftest's ``serve``
fixture and talks to it with an unmodified client. Handlers report what they saw through
plain lists (appended on the server's thread, read after the response arrived) or through
response headers, so every assertion is about bytes that crossed a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from prefork.stream import within
from tests.conftest import Running, hello, response_headers
from tests.helpers import curl, echo, need_curl, pattern

TIMEOUT = 5.0


# -- a small raw HTTP/1.1 response reader -------------------------------------------------------


@dataclass
class Resp:
    version: bytes
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]


class Reader:
    """Reads responses off a raw socket, framing them as RFC 9112 section 6.3 says."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed; unparsed: {self.buf[:200]!r}")
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def fields(self) -> list[tuple[str, str]]:
        out = []
        while line := self.line():
            name, colon, value = line.partition(b":")
            assert colon, line
            out.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
        return out

    def response(self, method: str = "GET") -> Resp:
        version, status, *_ = self.line().split(b" ", 2)
        resp = Resp(version, int(status), self.fields())
        if method == "HEAD" or resp.status in (204, 304) or resp.status < 200:
            return resp
        if resp.get("transfer-encoding"):
            assert resp.get("transfer-encoding") == ["chunked"], resp.headers
            assert not resp.get("content-length"), resp.headers
            parts = []
            while size := int(self.line().split(b";")[0], 16):
                parts.append(self.exactly(size))
                assert self.exactly(2) == b"\r\n"
            resp.body = b"".join(parts)
            resp.trailers = self.fields()
        elif resp.get("content-length"):
            resp.body = self.exactly(int(resp.get("content-length")[0]))
        else:
            with contextlib.suppress(EOFError):
                while True:
                    self._fill()
            resp.body, self.buf = self.buf, b""
        return resp

    def at_eof(self) -> bool:
        """True when the server closed the connection and nothing else was sent."""
        return self.buf == b"" and self.sock.recv(1) == b""


@contextlib.contextmanager
def raw(running: Running) -> Iterator[tuple[socket.socket, Reader]]:
    with running.connect(TIMEOUT) as sock:
        yield sock, Reader(sock)


# -- http.client --------------------------------------------------------------------------------


@contextlib.contextmanager
def http_client(running: Running) -> Iterator[http.client.HTTPConnection]:
    conn = http.client.HTTPConnection(running.host, running.port, timeout=TIMEOUT)
    try:
        yield conn
    finally:
        conn.close()


def test_http_client_get(serve) -> None:
    running = serve(hello)
    with http_client(running) as conn:
        conn.request("GET", "/hello?x=1")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.version == 11
        assert resp.getheader("content-type") == "text/plain"
        assert resp.getheader("content-length") == "13"
        assert resp.getheader("date")
        assert resp.read() == b"Hello world!\n"


def test_http_client_post_with_body(serve) -> None:
    running = serve(echo)
    with http_client(running) as conn:
        conn.request(
            "POST",
            "/submit?a=b",
            body=b"name=value&x=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == b"name=value&x=1"
        assert resp.getheader("x-method") == "POST"
        assert resp.getheader("x-path") == "/submit?a=b"
        assert resp.getheader("x-request-cl") == "14"


def test_http_client_keep_alive_reuses_one_connection(serve) -> None:
    running = serve(echo)
    with http_client(running) as conn:
        peers = set()
        socks = set()
        for i in range(5):
            conn.request("POST" if i % 2 else "GET", f"/r{i}", body=b"b%d" % i if i % 2 else None)
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("x-path") == f"/r{i}"
            assert resp.read() == (b"b%d" % i if i % 2 else b"")
            assert resp.getheader("connection") is None  # keep-alive is the 1.1 default
            peers.add(resp.getheader("x-peer"))
            socks.add(id(conn.sock))
        assert len(peers) == 1, peers  # the server saw one client port
        assert len(socks) == 1 and conn.sock is not None


def test_http_client_chunked_upload(serve) -> None:
    running = serve(echo)
    parts = [b"first,", b"", b"second,", pattern(100_000), b"last"]
    with http_client(running) as conn:
        conn.request(
            "PUT",
            "/up",
            body=iter(parts),
            encode_chunked=True,
            headers={"Transfer-Encoding": "chunked"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == b"".join(parts)
        assert resp.getheader("x-request-te") == "chunked"
        assert resp.getheader("x-request-cl") == "-"


# -- httpx --------------------------------------------------------------------------------------


def httpx_client(running: Running) -> httpx.Client:
    # trust_env=False: a proxy from the environment must not sit between client and server.
    return httpx.Client(base_url=running.url, timeout=TIMEOUT, trust_env=False)


def test_httpx_keep_alive(serve) -> None:
    running = serve(echo)
    with httpx_client(running) as client:
        responses = [client.get(f"/k{i}") for i in range(4)]
        responses.append(client.post("/k4", content=b"data"))
    assert [r.status_code for r in responses] == [200] * 5
    assert [r.headers["x-path"] for r in responses] == [f"/k{i}" for i in range(5)]
    assert responses[-1].content == b"data"
    assert len({r.headers["x-peer"] for r in responses}) == 1  # one connection for all


def test_httpx_streaming_download_of_chunked_body(serve) -> None:
    blocks = [pattern(1000 + i * 37) for i in range(400)]  # ~3.3 MB in 400 write_chunk calls

    async def onstream(server, stream):
        await stream.get_headers()
        await stream.write_headers(response_headers("200", content_type="x/test"), False)
        for block in blocks:
            await stream.write_chunk(block, False)
        await stream.write_chunk(b"", True)

    running = serve(onstream)
    digest = hashlib.sha256()
    pieces = 0
    with httpx_client(running) as client, client.stream("GET", "/big") as resp:
        assert resp.status_code == 200
        assert resp.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in resp.headers
        for piece in resp.iter_bytes():
            digest.update(piece)
            pieces += 1
    assert digest.hexdigest() == hashlib.sha256(b"".join(blocks)).hexdigest()
    assert pieces > 1  # it really streamed


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_httpx_large_upload_round_trips(serve, framing: str) -> None:
    running = serve(echo, max_buffered_body=8 * 1024 * 1024)  # echo reads the body whole
    data = pattern(6 * 1024 * 1024 + 7)

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    with httpx_client(running) as client:
        content = data if framing == "content-length" else pieces()
        resp = client.post("/upload", content=content)
    assert resp.status_code == 200
    assert resp.headers["x-request-te"] == ("-" if framing == "content-length" else "chunked")
    assert len(resp.content) == len(data)
    assert resp.content == data


# -- curl -----------------------------------------------------------------------------------------


@need_curl
def test_curl_http11(serve) -> None:
    running = serve(echo)
    out = curl("--http1.1", "-i", running.url + "/c11")
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nx-peer-version: 1.1\r\n" in head
    assert b"\r\nx-path: /c11\r\n" in head
    assert body == b""


@need_curl
def test_curl_http10(serve) -> None:
    running = serve(echo)
    out = curl("--http1.0", "-i", "--data-binary", "ten", running.url + "/c10")
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 "))
    assert b"\r\nx-peer-version: 1.0\r\n" in head
    assert b"\r\nconnection: close\r\n" in head + b"\r\n"
    assert body == b"ten"


@need_curl
def test_curl_head_keeps_content_length_sends_no_body(serve) -> None:
    running = serve(hello)
    out = curl("--http1.1", "-I", running.url + "/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-length: 13\r\n" in out.stdout
    assert out.stdout.endswith(b"\r\n\r\n")  # head only
    assert b"Hello" not in out.stdout


@need_curl
def test_curl_expect_100_continue(serve, tmp_path) -> None:
    running = serve(echo)
    data = pattern(300_000)
    (tmp_path / "in").write_bytes(data)
    # --expect100-timeout 20 > --max-time: without a 100 curl would not send the body at all.
    out = curl(
        "--http1.1",
        "-v",
        "-H",
        "Expect: 100-continue",
        "--expect100-timeout",
        "20",
        "--data-binary",
        f"@{tmp_path / 'in'}",
        "-o",
        str(tmp_path / "out"),
        running.url + "/e",
    )
    assert out.returncode == 0, out.stderr
    assert b"< HTTP/1.1 100 Continue" in out.stderr
    assert b"< HTTP/1.1 200 OK" in out.stderr
    assert (tmp_path / "out").read_bytes() == data


@need_curl
def test_curl_data_binary_file_upload(serve, tmp_path) -> None:
    running = serve(echo)
    data = pattern(2 * 1024 * 1024 + 3)
    (tmp_path / "in").write_bytes(data)
    out = curl(
        "--http1.1",
        "-D",
        "-",
        "--data-binary",
        f"@{tmp_path / 'in'}",
        "-o",
        str(tmp_path / "out"),
        running.url + "/file",
    )
    assert out.returncode == 0, out.stderr
    assert b"x-request-cl: %d\r\n" % len(data) in out.stdout
    assert (tmp_path / "out").read_bytes() == data


# -- raw sockets ----------------------------------------------------------------------------------


def test_pipelining_three_requests_in_one_write(serve) -> None:
    running = serve(echo)
    with raw(running) as (sock, reader):
        sock.sendall(
            b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        responses = [reader.response() for _ in range(3)]
        assert reader.at_eof()
    assert [r.status for r in responses] == [200, 200, 200]
    assert [r.get("x-path") for r in responses] == [["/one"], ["/two"], ["/three"]]
    assert [r.body for r in responses] == [b"", b"abc", b""]
    assert responses[2].get("connection") == ["close"]
    assert responses[0].get("connection") == []


def test_http10_request_gets_response_and_close(serve) -> None:
    running = serve(echo)
    with raw(running) as (sock, reader):
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        resp = reader.response()
        assert reader.at_eof()
    assert resp.version in (b"HTTP/1.1", b"HTTP/1.0")
    assert resp.status == 200
    assert resp.get("connection") == ["close"]
    assert resp.get("x-peer-version") == ["1.0"]


def test_http10_keep_alive(serve) -> None:
    running = serve(hello)
    with raw(running) as (sock, reader):
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            resp = reader.response()
            assert resp.status == 200
            assert resp.get("connection") == ["keep-alive"]
            assert resp.body == b"Hello world!\n"
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")  # no keep-alive: the last one
        resp = reader.response()
        assert resp.get("connection") == ["close"]
        assert reader.at_eof()


@pytest.mark.parametrize("status", ["204", "304"])
def test_no_body_statuses(serve, status: str) -> None:
    async def onstream(server, stream):
        headers = await stream.get_headers()
        if headers.get(":path") != "/empty":
            await hello(server, stream)
            return
        await stream.write_headers(response_headers(status, etag='"v1"'), False)
        await stream.write_chunk(b"this must not be sent", False)
        await stream.write_chunk(b"", True)

    running = serve(onstream)
    with raw(running) as (sock, reader):
        sock.sendall(
            b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        first = reader.response()
        # The next response must follow the empty line at once: stray body or chunk framing
        # bytes would be read as its status line.
        second = reader.response()
        assert reader.at_eof()
    assert first.status == int(status)
    assert first.get("transfer-encoding") == []
    assert first.get("etag") == ['"v1"']
    if status == "204":
        assert first.get("content-length") == []  # RFC 9110 section 8.6
    assert second.status == 200 and second.body == b"Hello world!\n"


def test_head_response_has_no_body(serve) -> None:
    running = serve(hello)
    with raw(running) as (sock, reader):
        sock.sendall(
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        head = reader.response("HEAD")
        second = reader.response()
        assert reader.at_eof()
    assert head.status == 200
    assert head.get("content-length") == ["13"]
    assert second.status == 200 and second.body == b"Hello world!\n"


def test_response_trailers(serve) -> None:
    async def onstream(server, stream):
        headers = await stream.get_headers()
        await stream.get_body_as_string()
        if headers.get(":path") != "/trailers":
            await hello(server, stream)
            return
        await stream.write_headers(response_headers("200", trailer="x-checksum, x-count"), False)
        await stream.write_chunk(b"abc", False)
        await stream.write_chunk(b"def", False)
        trailers = response_headers("200")
        trailers.delete(":status")
        trailers.append("x-checksum", hashlib.md5(b"abcdef").hexdigest())
        trailers.append("x-count", "2")
        await stream.write_headers(trailers, True)

    running = serve(onstream)
    with raw(running) as (sock, reader):
        sock.sendall(
            b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        resp = reader.response()
        second = reader.response()
        assert reader.at_eof()
    assert resp.get("transfer-encoding") == ["chunked"]
    assert resp.body == b"abcdef"
    assert resp.trailers == [("x-checksum", hashlib.md5(b"abcdef").hexdigest()), ("x-count", "2")]
    assert second.body == b"Hello world!\n"


@pytest.mark.parametrize("order", ["body-then-trailers", "trailers-then-body"])
def test_request_trailers(serve, order: str) -> None:
    seen: list[Any] = []

    async def onstream(server, stream):
        headers = await stream.get_headers()
        if order == "body-then-trailers":
            body = await stream.get_body_as_string()
            trailers = await stream.get_headers()
        else:  # skipping to the trailers keeps the body for later reads
            trailers = await stream.get_headers()
            body = await stream.get_body_as_string()
        after = await stream.get_headers()
        seen.append((headers.get("trailer"), body, trailers and trailers.items(), after))
        await stream.write_headers(response_headers("200", content_length="0"), True)

    running = serve(onstream)
    with raw(running) as (sock, reader):
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: x-checksum\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\nX-Other: 1\r\n\r\n"
        )
        resp = reader.response()
        assert reader.at_eof()
    assert resp.status == 200
    assert seen == [
        ("x-checksum", b"hello world", [("x-checksum", "abc123"), ("x-other", "1")], None)
    ]


# -- write_body_from_file -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["content-length", "chunked", "offset-and-count"])
def test_write_body_from_file(serve, tmp_path, mode: str) -> None:
    data = pattern(1024 * 1024 + 123)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    positions: list[int] = []
    finished = threading.Semaphore(0)  # the handler ends after the client has its bytes

    async def onstream(server, stream):
        await stream.get_headers()
        h = response_headers("200", content_type="application/octet-stream")
        with open(path, "rb") as f:
            if mode == "content-length":
                h.append("content-length", str(len(data)))
                await stream.write_headers(h, False)
                await stream.write_body_from_file(f)
            elif mode == "chunked":
                await stream.write_headers(h, False)
                await stream.write_body_from_file(f)
            else:
                f.seek(1000)
                h.append("content-length", "50000")
                await stream.write_headers(h, False)
                await stream.write_body_from_file(f, 50000)
            positions.append(f.tell())
        finished.release()

    running = serve(onstream)
    with raw(running) as (sock, reader):
        # Two requests on one connection: the framing after sendfile must be exact.
        sock.sendall(b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
        first = reader.response()
        sock.sendall(b"GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        second = reader.response()
        assert reader.at_eof()
    expected = data[1000:51000] if mode == "offset-and-count" else data
    for resp in (first, second):
        assert resp.status == 200
        assert resp.body == expected
        if mode == "chunked":
            assert resp.get("transfer-encoding") == ["chunked"]
        else:
            assert resp.get("content-length") == [str(len(expected))]
    assert finished.acquire(timeout=TIMEOUT) and finished.acquire(timeout=TIMEOUT)
    assert positions == [51000 if mode == "offset-and-count" else len(data)] * 2


# -- Unix sockets ---------------------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def test_unix_socket_http_client(serve, tmp_path) -> None:
    path = str(tmp_path / "s.sock")
    names: list[tuple] = []

    async def onstream(server, stream):
        names.append((stream.connection.peername(), stream.connection.localname()))
        await echo(server, stream)

    running = serve(onstream, path=path)
    assert running.family == socket.AF_UNIX and running.path == path
    conn = UnixHTTPConnection(path)
    try:
        for i in range(2):  # keep-alive over the Unix socket too
            conn.request("POST", f"/u{i}", body=b"over unix %d" % i)
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == b"over unix %d" % i
            assert resp.getheader("x-peer") == "unix"
    finally:
        conn.close()
    assert len(names) == 2
    peer, local = names[0]
    assert peer[0] == socket.AF_UNIX
    assert local == (socket.AF_UNIX, path)


@need_curl
def test_unix_socket_curl(serve, tmp_path) -> None:
    path = str(tmp_path / "s.sock")
    running = serve(hello, path=path)
    out = curl("--http1.1", "--unix-socket", running.path, "http://localhost/")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"Hello world!\n"


# -- the stream API -------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_stream_body_readers_and_unget(serve, framing: str) -> None:
    results: list[dict[str, Any]] = []

    async def onstream(server, stream):
        await stream.get_headers()
        r: dict[str, Any] = {}
        r["chars"] = await stream.get_body_chars(5)
        r["until_plain"] = await stream.get_body_until(b";")
        r["until_regex"] = await stream.get_body_until(rb"\d+", plain=False, include_pattern=True)
        stream.unget(b"XY")
        r["after_unget"] = await stream.get_body_chars(4)
        r["until_inclusive"] = await stream.get_body_until(b";", include_pattern=True)
        r["until_missing"] = await stream.get_body_until(b"#")
        r["chars_at_end"] = await stream.get_body_chars(3)
        r["next_chunk_at_end"] = await stream.get_next_chunk()
        results.append(r)
        await stream.write_headers(response_headers("200", content_length="0"), True)

    running = serve(onstream)
    # The patterns straddle the chunk boundaries on purpose.
    pieces = [b"hel", b"lo,wo", b"rld", b";abc1", b"23def;ta", b"il"]
    if framing == "chunked":
        body = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        head = b"Transfer-Encoding: chunked\r\n"
    else:
        body = b"".join(pieces)
        head = b"Content-Length: %d\r\n" % len(body)
    with raw(running) as (sock, reader):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n" + body)
        assert reader.response().status == 200
    assert results == [
        {
            "chars": b"hello",
            "until_plain": b",world",  # the pattern is consumed, not returned
            "until_regex": b"abc123",
            "after_unget": b"XYde",
            "until_inclusive": b"f;",
            "until_missing": b"tail",
            "chars_at_end": None,
            "next_chunk_at_end": None,
        }
    ]


@pytest.mark.parametrize("reader_name", ["save_body_to_file", "get_body_as_file"])
def test_stream_body_to_file(serve, reader_name: str) -> None:
    data = pattern(1_500_000)

    async def onstream(server, stream):
        await stream.get_headers()
        if reader_name == "save_body_to_file":
            with tempfile.TemporaryFile() as f:
                await stream.save_body_to_file(f)
                f.seek(0)
                got = f.read()
        else:
            f = await stream.get_body_as_file()
            with f:
                assert f.tell() == 0
                got = f.read()
        await stream.write_headers(response_headers("200", content_length=str(len(got))), False)
        await stream.write_chunk(got, True)

    running = serve(onstream)
    with httpx_client(running) as client:
        resp = client.post("/file", content=data)
    assert resp.status_code == 200
    assert resp.content == data


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_stream_connection_info(serve, version: str) -> None:
    info: list[dict[str, Any]] = []

    def probe(fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # reported in the assertion below, not as a 500
            return f"{type(exc).__name__}: {exc}"

    async def onstream(server, stream):
        info.append(
            {
                "peername": probe(lambda: stream.peername()),
                "localname": probe(lambda: stream.localname()),
                "peer_version": probe(lambda: stream.peer_version),
                "connection_version": probe(lambda: stream.connection.version),
                "tls": probe(lambda: stream.checktls()),
            }
        )
        await hello(server, stream)

    running = serve(onstream)
    with raw(running) as (sock, reader):
        sock.sendall(b"GET / HTTP/%b\r\nHost: x\r\n\r\n" % version.encode())
        assert reader.response().status == 200
        client_addr = sock.getsockname()
    assert info == [
        {
            "peername": (socket.AF_INET, "127.0.0.1", client_addr[1]),
            "localname": (socket.AF_INET, "127.0.0.1", running.port),
            "peer_version": float(version),
            "connection_version": 1.1,
            "tls": None,
        }
    ]
    assert isinstance(info[0]["peername"][0], socket.AddressFamily)


def test_concurrent_clients_are_served_in_parallel(serve) -> None:
    """A handler waiting for one client's body does not hold up another client's request."""
    waiting = threading.Event()

    async def onstream(server, stream):
        headers = await stream.get_headers()
        if headers.get(":path") == "/slow":
            first = await stream.get_body_chars(2)
            waiting.set()
            body = first + await stream.get_body_as_string()
        else:
            body = b"fast"
        await stream.write_headers(response_headers("200", content_length=str(len(body))), False)
        await stream.write_chunk(body, True)

    running = serve(onstream)
    with raw(running) as (slow, slow_reader):
        slow.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        assert waiting.wait(TIMEOUT)
        with httpx_client(running) as client:
            fast = client.get("/fast")
        assert fast.status_code == 200 and fast.content == b"fast"
        slow.sendall(b"cd")
        resp = slow_reader.response()
    assert resp.body == b"abcd"


def test_within_bounds_only_what_has_a_timeout() -> None:
    """The body helpers enter asyncio.timeout only with a timeout: without one, nothing looks
    up the current task (a getpid() call per read on Python 3.11)."""

    async def untimed() -> str:
        async with within(None):  # asyncio.timeout would need a task: RuntimeError
            return "ran"

    coro = untimed()
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # driven by hand: no loop, no task
    assert done.value.value == "ran"

    async def timed() -> None:
        async with within(0.01):
            await asyncio.sleep(10)

    with pytest.raises(TimeoutError):
        asyncio.run(timed())
