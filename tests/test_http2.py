"""HTTP/2 on real sockets: httpx, curl, nghttp, and h2 itself as a raw (sometimes hostile) client.

Servers are conftest ``serve(...)`` fixtures on 127.0.0.1 port 0. The raw client
(:class:`Raw`) is h2's client connection over a blocking socket with a timeout: it sends
what h2 queues and collects events until a condition holds, so nothing sleeps to
synchronise. Defence tests attack a live server, then check that a normal client is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events as ev
import h2.settings
import httpx
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, Frame, HeadersFrame

from prefork.errors import ProtocolError, StreamStateError
from prefork.headers import Headers
from prefork.protocol import http2 as proto
from prefork.protocol import tls
from tests.conftest import Running, hello, response_headers
from tests.helpers import curl, echo, need_curl, wait_until
from tests.tls_helpers import each_engine, server_context, with_engines

TIMEOUT = 10.0
NGHTTP = shutil.which("nghttp")
need_nghttp = pytest.mark.skipif(NGHTTP is None, reason="nghttp not installed")
REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]


# -- clients ---------------------------------------------------------------------------------


def h2_context(engine: str = "pyopenssl", host: str = "127.0.0.1", version: Any = None) -> Any:
    """A server context of ``engine`` whose ALPN offers h2 (generated certificate)."""
    return server_context(engine, host, tls.alpn_protocols(version, h2=True))


@contextlib.contextmanager
def prior_knowledge(running: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.url, http1=False, http2=True, timeout=TIMEOUT) as client:
        yield client


class Raw:
    """h2's client connection over a socket: the raw, scriptable peer."""

    def __init__(
        self, running: Running, settings: dict[int, int] | None = None, sock: Any = None
    ) -> None:
        self.sock = sock if sock is not None else running.connect(TIMEOUT)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.events: list[Any] = []
        self.closed = False
        self.ack = True  # give window back for what arrives, as a well-behaved client does
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def wait(self, done: Callable[[list[Any]], Any], what: str = "event") -> list[Any]:
        """Read until ``done(events)`` is true (or the server closes); returns all events."""
        while not done(self.events):
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                if done(self.events):
                    break
                raise AssertionError(f"connection closed before {what}: {self.events}")
            new = self.conn.receive_data(data)
            self.events += new
            for e in new:
                if isinstance(e, ev.DataReceived) and self.ack and e.stream_id in self.conn.streams:
                    self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            with contextlib.suppress(OSError):
                self.flush()
        return self.events

    def until_closed(self) -> list[Any]:
        return self.wait(lambda _: self.closed, "close")

    def response(self, sid: int) -> tuple[dict[str, str], bytes]:
        self.wait(lambda es: any(isinstance(e, ev.StreamEnded) and e.stream_id == sid for e in es))
        heads = [
            e for e in self.events if isinstance(e, ev.ResponseReceived) and e.stream_id == sid
        ]
        body = b"".join(
            e.data for e in self.events if isinstance(e, ev.DataReceived) and e.stream_id == sid
        )
        return dict(heads[0].headers), body

    def get(self, path: str = "/", end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [*REQUEST[:1], (":path", path), *REQUEST[2:]], end_stream=end)
        self.flush()
        return sid

    def send_body(self, sid: int, data: bytes, end: bool = False) -> None:
        """``data`` in frames of the default maximum size (RFC 9113 section 4.2)."""
        for i in range(0, len(data), 16384):
            piece = data[i : i + 16384]
            self.conn.send_data(sid, piece, end_stream=end and i + 16384 >= len(data))
        if end and not data:
            self.conn.end_stream(sid)
        self.flush()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[Callable[..., Raw]]:
    made: list[Raw] = []

    def make(running: Running, settings: dict[int, int] | None = None) -> Raw:
        client = Raw(running, settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def goaway(events: list[Any]) -> ev.ConnectionTerminated | None:
    return next((e for e in events if isinstance(e, ev.ConnectionTerminated)), None)


def assert_serves(running: Running) -> None:
    with prior_knowledge(running) as client:
        r = client.get("/")
    assert (r.status_code, r.http_version, r.content) == (200, "HTTP/2", b"Hello world!\n")


# -- entering HTTP/2 ---------------------------------------------------------------------------


def test_httpx_prior_knowledge(serve) -> None:
    running = serve(echo)
    with prior_knowledge(running) as client:
        r = client.post("/p?q=1", content=b"abc")
    assert r.http_version == "HTTP/2"
    assert r.content == b"abc"
    assert r.headers["x-method"] == "POST"
    assert r.headers["x-path"] == "/p?q=1"
    assert r.headers["x-scheme"] == "http"
    assert r.headers["x-authority"] == f"127.0.0.1:{running.port}"
    assert (r.headers["x-peer-version"], r.headers["x-version"]) == ("2.0", "2")
    assert "date" in r.headers


@each_engine
@pytest.mark.parametrize("mode", [True, None])
def test_the_generated_context_offers_h2(serve, mode: bool | None) -> None:
    running = serve(echo, tls=mode)  # no ctx: the self-signed default
    with httpx.Client(http2=True, verify=False, timeout=TIMEOUT) as client:
        r = client.get(f"https://127.0.0.1:{running.port}/t")
    assert (r.status_code, r.http_version) == (200, "HTTP/2")


@each_engine
@pytest.mark.parametrize("mode", [True, None])
def test_httpx_over_tls_alpn(serve, tls_engine: str, mode: bool | None) -> None:
    running = serve(echo, tls=mode, ctx=h2_context(tls_engine))
    url = f"https://127.0.0.1:{running.port}"
    with httpx.Client(http2=True, verify=False, timeout=TIMEOUT) as client:
        r = client.post(url + "/t", content=b"x" * 100)
    assert (r.http_version, r.headers["x-scheme"], r.headers["x-tls"]) == ("HTTP/2", "https", "yes")
    assert r.content == b"x" * 100


@need_curl
def test_curl_prior_knowledge_and_upgrade(serve) -> None:
    running = serve(echo)
    out = curl("--http2-prior-knowledge", "-i", "-d", "hello", running.url + "/pk")
    assert out.stdout.startswith(b"HTTP/2 200"), out
    assert out.stdout.endswith(b"\r\n\r\nhello")
    out = curl("--http2", "-i", running.url + "/up")  # h2c: 101, then stream 1
    assert out.stdout.startswith(b"HTTP/1.1 101 Switching Protocols"), out
    assert b"HTTP/2 200" in out.stdout
    assert b"x-path: /up" in out.stdout


@need_curl
@each_engine
def test_curl_over_tls(serve, tls_engine: str) -> None:
    running = serve(echo, tls=True, ctx=h2_context(tls_engine))
    out = curl("--http2", "-k", "-i", f"https://127.0.0.1:{running.port}/s")
    assert out.stdout.startswith(b"HTTP/2 200"), out
    assert b"x-scheme: https" in out.stdout


@need_curl
def test_h2c_upgrade_with_a_body_stays_http1(serve) -> None:
    running = serve(echo)
    out = curl("--http2", "-i", "-d", "body", running.url + "/b")
    assert out.stdout.startswith(b"HTTP/1.1 200"), out
    assert out.stdout.endswith(b"body")


@need_nghttp
@pytest.mark.parametrize("upgrade", [False, True])
def test_nghttp(serve, upgrade: bool) -> None:
    running = serve(hello)
    args = [NGHTTP, "-nv", *(["-u"] if upgrade else []), running.url + "/"]
    out = subprocess.run(args, capture_output=True, timeout=15, check=False)  # type: ignore[list-item]
    text = out.stdout.decode()
    assert out.returncode == 0, text
    assert ":status: 200" in text
    assert ("HTTP Upgrade success" in text) == upgrade
    assert "recv DATA frame <length=13, flags=0x01" in text


@pytest.mark.parametrize("mode", [False, None])
def test_version_2_bad_preface_gets_goaway(serve, mode: bool | None) -> None:
    running = serve(hello, version=2, tls=mode)
    with running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    assert frames[-1].type == 0x7, frames  # GOAWAY
    assert frames[-1].error_code == ErrorCodes.PROTOCOL_ERROR
    assert_serves(running)


def test_preface_split_across_reads(serve) -> None:
    running = serve(hello)
    for first, rest in [
        (b"P", b"OST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        (b"PRI * HTTP", proto.PREFACE[10:]),
    ]:
        with running.connect() as sock:
            sock.sendall(first)
            sock.sendall(rest)
            reply = sock.recv(65536)
        if first == b"P":
            assert reply.startswith(b"HTTP/1.1 200 OK"), reply
        else:  # the server's SETTINGS: HTTP/2
            frame, _ = Frame.parse_frame_header(memoryview(reply[:9]))
            assert frame.type == 0x4, reply


@each_engine
def test_prior_knowledge_over_tls_without_alpn(serve) -> None:
    running = serve(echo, tls=True)  # no ALPN asked for: the preface decides
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = ctx.wrap_socket(running.connect(), server_hostname="localhost")
    client = Raw(running, sock=sock)
    try:
        headers, _ = client.response(client.get("/tls"))
    finally:
        client.close()
    assert sock.selected_alpn_protocol() is None
    assert (headers[":status"], headers["x-tls"]) == ("200", "yes")


@each_engine
def test_version_2_pins_http2_over_tls_without_alpn(serve) -> None:
    running = serve(echo, tls=True, version=2)  # the generated context offers no h2 here
    with httpx.Client(http2=True, verify=False, timeout=TIMEOUT) as client:
        r = client.get(f"https://127.0.0.1:{running.port}/")
    assert r.http_version == "HTTP/2"


# -- streams: concurrency, flow control, trailers ------------------------------------------------


def test_many_concurrent_streams_each_run_their_own_task(serve) -> None:
    count = 50
    arrived: list[int] = []
    all_in: list[asyncio.Event] = []

    async def gathering(server: Any, stream: Any) -> None:
        # No response until every stream's handler is running: they must run at once.
        if not all_in:
            all_in.append(asyncio.Event())
        arrived.append(stream.stream_id)
        if len(arrived) == count:
            all_in[0].set()
        await asyncio.wait_for(all_in[0].wait(), TIMEOUT)
        h = response_headers("200", content_length="2")
        await stream.write_headers(h, False)
        await stream.write_chunk(b"ok", True)

    running = serve(gathering)

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=running.url, http1=False, http2=True, timeout=TIMEOUT
        ) as client:
            return await asyncio.gather(*(client.get(f"/{i}") for i in range(count)))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * count
    assert len(set(arrived)) == count  # distinct streams of one connection
    assert running.server.requests == count


def test_idle_stream_does_not_block_the_server(serve, raw) -> None:
    """lua-http: "an idle http2 stream doesn't block the server"."""
    running = serve(echo)
    client = raw(running)
    idle = client.get("/idle", end=False)  # a body that never comes
    client.conn.send_data(idle, b"partial")
    client.flush()
    busy = client.get("/busy")
    headers, _body = client.response(busy)
    assert headers[":status"] == "200"
    assert headers["x-path"] == "/busy"
    assert not any(
        getattr(e, "stream_id", None) == idle
        for e in client.events[1:]
        if isinstance(e, ev.ResponseReceived)
    )


def test_large_bodies_both_ways_with_flow_control(serve) -> None:
    body = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # 5 MiB, far beyond any window
    running = serve(echo, max_buffered_body=len(body))  # echo reads the body whole
    with prior_knowledge(running) as client:
        r = client.post("/big", content=body)
    assert r.status_code == 200
    assert r.content == body


def test_slow_reader_back_pressures_its_stream_only(serve, raw) -> None:
    gate = threading.Event()
    window = 65535

    async def slow(server: Any, stream: Any) -> None:
        headers = await stream.get_headers()
        if headers.get(":path") == "/slow":
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, TIMEOUT)
        body = await stream.get_body_as_string()
        await stream.write_headers(response_headers("200", content_length=str(len(body))), False)
        await stream.write_chunk(body, True)

    running = serve(slow)
    client = raw(running)
    client.wait(lambda es: any(isinstance(e, ev.WindowUpdated) and e.stream_id == 0 for e in es))
    sid = client.get("/slow", end=False)
    client.send_body(sid, b"x" * window)  # fills the stream's window exactly
    assert client.conn.local_flow_control_window(sid) == 0
    other = client.get("/fast", end=False)  # the connection window is still open
    client.send_body(other, b"y" * 1000, end=True)
    _, body = client.response(other)
    assert body == b"y" * 1000
    gate.set()  # now the slow handler reads: its window comes back
    client.wait(lambda es: any(isinstance(e, ev.WindowUpdated) and e.stream_id == sid for e in es))
    client.conn.send_data(sid, b"z", end_stream=True)
    client.flush()
    _headers, body = client.response(sid)
    assert len(body) == window + 1


def test_trailers_both_ways(serve, raw) -> None:
    async def trailing(server: Any, stream: Any) -> None:
        await stream.get_headers()
        trailers = await stream.get_headers()  # waits for the end of the body
        assert await stream.get_headers() is None
        body = await stream.get_body_as_string()
        await stream.write_headers(response_headers("200"), False)
        await stream.write_chunk(body, False)
        t = Headers()
        t.append("x-checksum", trailers.get("x-checksum"))
        await stream.write_headers(t, True)

    running = serve(trailing)
    client = raw(running)
    sid = client.get("/", end=False)
    client.conn.send_data(sid, b"data")
    client.conn.send_headers(sid, [("x-checksum", "abc")], end_stream=True)
    client.flush()
    _, body = client.response(sid)
    trailers = [e for e in client.events if isinstance(e, ev.TrailersReceived)]
    assert body == b"data"
    assert dict(trailers[0].headers) == {"x-checksum": "abc"}


# -- the stream contract, on HTTP/1 and HTTP/2 alike --------------------------------------------


@pytest.fixture(params=["1.1", "2"])
def client_for(request) -> Iterator[Callable[[Running], httpx.Client]]:
    """httpx speaking HTTP/1.1 or HTTP/2 (prior knowledge) to a plaintext server."""
    made: list[httpx.Client] = []
    h2 = request.param == "2"

    def make(running: Running) -> httpx.Client:
        client = httpx.Client(base_url=running.url, http1=not h2, http2=h2, timeout=TIMEOUT)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_contract_body_helpers(serve, client_for) -> None:
    async def parts(server: Any, stream: Any) -> None:
        await stream.get_headers()
        line = await stream.get_body_until(b"\r\n")
        three = await stream.get_body_chars(3)
        stream.unget(b"<" + three + b">")
        rest = await stream.get_body_as_string()
        end = await stream.get_next_chunk()
        body = b"|".join([line, three, rest, repr(end).encode()])
        h = response_headers("200", content_length=str(len(body)))
        h.append("x-versions", f"{stream.peer_version}/{stream.connection.version}")
        await stream.write_headers(h, False)
        await stream.write_chunk(body, True)

    running = serve(parts)
    r = client_for(running).post("/", content=b"first\r\nabcdefgh")
    assert r.content == b"first|abc|<abc>defgh|None"
    assert r.headers["x-versions"] in ("1.1/1.1", "2.0/2")


def test_contract_headers_then_trailers_then_none(serve, client_for) -> None:
    seen: list[Any] = []

    async def heads(server: Any, stream: Any) -> None:
        first = await stream.get_headers()
        seen.append((first.get(":method"), first.get(":path"), first.get(":scheme")))
        seen.append(await stream.get_headers())
        seen.append(await stream.get_headers())
        seen.append(await stream.get_body_as_string())  # kept after the trailers call
        await stream.write_headers(response_headers("204"), True)

    running = serve(heads)
    r = client_for(running).post("/h", content=b"kept")
    assert r.status_code == 204
    assert seen == [("POST", "/h", "http"), None, None, b"kept"]


@pytest.mark.parametrize(("behaviour", "status"), [("return", 503), ("raise", 500), ("shut", 503)])
def test_contract_no_response(serve, client_for, behaviour: str, status: int) -> None:
    async def lazy(server: Any, stream: Any) -> None:
        await stream.get_headers()
        if behaviour == "raise":
            raise RuntimeError("handler bug")
        if behaviour == "shut":
            await stream.shutdown()

    running = serve(lazy, onerror=lambda *args: None)
    r = client_for(running).get("/")
    assert r.status_code == status
    assert r.content.endswith(b"\n")


def test_contract_body_too_large(serve, client_for) -> None:
    seen: list[Any] = []

    async def reader(server: Any, stream: Any) -> None:
        await stream.get_headers()
        try:
            await stream.get_body_as_string()
        except ProtocolError as exc:
            seen.append(exc.status)
            raise

    running = serve(reader, max_body_size=10, onerror=lambda *args: None)
    r = client_for(running).post("/", content=b"x" * 100)  # all sent before the answer
    assert r.status_code == 413
    assert seen in ([], [413])  # HTTP/1 refuses the content-length before the handler runs


def test_contract_write_checks_and_accounting(serve, client_for) -> None:
    seen: list[Any] = []

    async def strict(server: Any, stream: Any) -> None:
        await stream.get_headers()
        with pytest.raises(StreamStateError):
            await stream.write_chunk(b"early", False)
        await stream.write_headers(response_headers("200", content_length="5"), False)
        with pytest.raises(ValueError, match="content-length"):
            await stream.write_chunk(b"too long", False)
        with pytest.raises(TypeError):
            await stream.write_chunk("text", False)
        await stream.write_chunk(b"12", False)
        await stream.write_body_from_file(io.BytesIO(b"345"))
        with pytest.raises(StreamStateError):
            await stream.write_chunk(b"late", True)
        seen.append((stream.status, stream.bytes_sent, stream.peername()[1], stream.localname()[1]))

    running = serve(strict)
    r = client_for(running).get("/")
    assert r.content == b"12345"
    wait_until(lambda: seen, what="the handler")  # it goes on after the response is out
    assert seen == [(200, 5, "127.0.0.1", "127.0.0.1")]


def test_contract_head_and_interim(serve, client_for) -> None:
    async def informative(server: Any, stream: Any) -> None:
        await stream.get_headers()
        hints = response_headers("103", link="</s.css>; rel=preload")
        await stream.write_headers(hints, False)
        await stream.write_headers(response_headers("200", content_length="4"), False)
        await stream.write_chunk(b"body", True)

    running = serve(informative)
    client = client_for(running)
    r = client.get("/")
    assert (r.status_code, r.content) == (200, b"body")
    r = client.head("/")
    assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "4")


# -- closing -------------------------------------------------------------------------------------


@need_nghttp
def test_graceful_close_sends_goaway_and_finishes_open_streams(serve) -> None:
    # nghttp, not h2: h2 accepts no frame after a GOAWAY, so it could not read the response.
    gate = threading.Event()

    async def held(server: Any, stream: Any) -> None:
        await stream.get_headers()
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, TIMEOUT)
        await stream.write_headers(response_headers("200", content_length="4"), False)
        await stream.write_chunk(b"done", True)

    running = serve(held)
    args = [NGHTTP, "-v", running.url + "/"]
    with subprocess.Popen(args, stdout=subprocess.PIPE) as client:  # type: ignore[list-item]
        try:
            wait_requests(running, 1)
            running.call(running.server.close)
        finally:
            gate.set()
        out, _ = client.communicate(timeout=TIMEOUT)
    text = out.decode()
    goaway_at = text.index("recv GOAWAY frame")
    # RFC 9113 section 6.8: the first names 2^31-1; the second (13, nghttp's first stream)
    # follows the PING's ACK, which may come after nghttp has its response and has left
    assert "(last_stream_id=2147483647, error_code=NO_ERROR" in text[goaway_at:][:160]
    assert text.index(":status: 200") > goaway_at  # the open stream finished after it
    assert "done[" in text  # the body, printed before its DATA frame
    assert client.returncode == 0


def test_idle_connection_closed_after_intra_stream_timeout(serve, raw) -> None:
    running = serve(hello, intra_stream_timeout=0.2)
    client = raw(running)
    client.response(client.get("/"))
    client.until_closed()  # GOAWAY, then close, once no stream is open for 0.2 s
    assert goaway(client.events).error_code == ErrorCodes.NO_ERROR


def wait_requests(running: Running, n: int) -> None:
    wait_until(lambda: running.call(lambda: running.server.requests) >= n, what="requests")


# -- HTTP/2 only: push, reset, stalled windows ---------------------------------------------------


def test_push_promise(serve, raw) -> None:
    async def pushing(server: Any, stream: Any) -> None:
        req = await stream.get_headers()
        promised = Headers()
        for name in (":method", ":scheme", ":authority"):
            promised.append(name, req.get(name))
        promised.append(":path", "/style.css")
        pushed = await stream.push_promise(promised)
        await pushed.write_headers(response_headers("200", content_type="text/css"), False)
        await pushed.write_chunk(b"p{}", True)
        await stream.write_headers(response_headers("200"), False)
        await stream.write_chunk(b"page", True)

    running = serve(pushing)
    client = raw(running)
    sid = client.get("/")
    _, body = client.response(sid)
    promise = next(e for e in client.events if isinstance(e, ev.PushedStreamReceived))
    assert dict(promise.headers)[":path"] == "/style.css"
    headers, pushed_body = client.response(promise.pushed_stream_id)
    assert (body, pushed_body, headers["content-type"]) == (b"page", b"p{}", "text/css")


def test_push_refused_when_the_client_disabled_it(serve, raw) -> None:
    seen: list[Any] = []

    async def pushing(server: Any, stream: Any) -> None:
        with pytest.raises(StreamStateError):
            await stream.push_promise(await stream.get_headers())
        seen.append("refused")
        await stream.write_headers(response_headers("204"), True)

    running = serve(pushing)
    client = raw(running, {h2.settings.SettingCodes.ENABLE_PUSH: 0})
    client.response(client.get("/"))
    assert seen == ["refused"]


def test_rst_stream_from_the_handler(serve, raw) -> None:
    seen: list[Any] = []

    async def refusing(server: Any, stream: Any) -> None:
        await stream.get_headers()
        stream.rst_stream(ErrorCodes.REFUSED_STREAM)
        try:
            await stream.write_headers(response_headers("200"), True)
        except BrokenPipeError:
            seen.append("reset")

    running = serve(refusing)
    client = raw(running)
    sid = client.get("/")
    client.wait(lambda es: any(isinstance(e, ev.StreamReset) for e in es))
    reset = next(e for e in client.events if isinstance(e, ev.StreamReset))
    assert (reset.stream_id, reset.error_code) == (sid, ErrorCodes.REFUSED_STREAM)
    wait_until(lambda: seen, what="the handler")
    assert seen == ["reset"]


def test_window_that_never_opens_is_released_by_timeout(serve, raw) -> None:
    seen: list[Any] = []

    async def writer(server: Any, stream: Any) -> None:
        await stream.get_headers()
        await stream.write_headers(response_headers("200"), False)
        try:
            await stream.write_chunk(b"x" * 100, True, timeout=0.2)
        except TimeoutError:
            seen.append("timeout")  # the handler returns: the stream is reset

    running = serve(writer)
    client = raw(running, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    sid = client.get("/")
    client.wait(lambda es: any(isinstance(e, ev.StreamReset) for e in es))
    reset = next(e for e in client.events if isinstance(e, ev.StreamReset))
    assert (reset.stream_id, reset.error_code) == (sid, ErrorCodes.INTERNAL_ERROR)
    assert seen == ["timeout"]
    with prior_knowledge(running) as other:  # a client with an open window is served
        assert other.get("/").content == b"x" * 100


# -- defences: attack a live server, then serve a normal client -----------------------------------


def attack(client: Raw, data: bytes) -> list[Any]:
    """Send ``data`` (the server may close midway), then read until the server closes."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        client.sock.sendall(data)
    return client.wait(goaway, "GOAWAY")


def test_rapid_reset_gets_enhance_your_calm(serve, raw) -> None:
    running = serve(hello)
    client = raw(running)
    for _ in range(1000):  # CVE-2023-44487: open and cancel at once
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(sid, REQUEST, end_stream=True)
        client.conn.reset_stream(sid, ErrorCodes.CANCEL)
    events = attack(client, client.conn.data_to_send())
    assert goaway(events).error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert running.server.requests < 1000
    assert_serves(running)


def test_ping_flood_gets_enhance_your_calm(serve, raw) -> None:
    running = serve(hello)
    client = raw(running)
    for i in range(1000):
        client.conn.ping(i.to_bytes(8, "big"))
    events = attack(client, client.conn.data_to_send())
    assert goaway(events).error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert_serves(running)


def test_settings_flood_gets_enhance_your_calm(serve, raw) -> None:
    running = serve(hello)
    client = raw(running)
    for i in range(1000):
        client.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: i + 1})
    events = attack(client, client.conn.data_to_send())
    assert goaway(events).error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert_serves(running)


@pytest.mark.parametrize("kind", ["large", "bomb"])
def test_oversized_header_list_is_refused(serve, raw, kind: str) -> None:
    running = serve(hello)
    client = raw(running)
    if kind == "large":  # one 70 KB field: the block itself is over the limit
        fields = [*REQUEST, ("x-big", "a" * 70000)]
    else:  # HPACK bomb: a 4 KB field indexed once, then referenced in one byte each
        fields = [*REQUEST] + [("x-bomb", "b" * 4000)] * 30
    client.conn.send_headers(client.conn.get_next_available_stream_id(), fields, end_stream=True)
    events = attack(client, client.conn.data_to_send())
    assert goaway(events).error_code == ErrorCodes.ENHANCE_YOUR_CALM  # RFC 9113 section 10.5.1
    assert running.server.requests == 0
    assert_serves(running)


@pytest.mark.parametrize("size", [16384, 0])
def test_continuation_flood_closes_the_connection(serve, raw, size: int) -> None:
    running = serve(hello)
    client = raw(running)
    block = h2.connection.H2Connection().encoder.encode(REQUEST)
    frames = [HeadersFrame(1, data=block).serialize()]  # no END_HEADERS: a block is open
    frames += [ContinuationFrame(1, data=b"\x00" * size).serialize()] * 200  # 3.2 MB or 200
    events = attack(client, b"".join(frames))
    # CVE-2024-27316: closed long before 200 frames: at 64 KiB, or at h2's 64 frames
    assert goaway(events).error_code in (ErrorCodes.ENHANCE_YOUR_CALM, ErrorCodes.PROTOCOL_ERROR)
    assert running.server.requests == 0
    assert_serves(running)


# -- lua-http's matrix: family x tls x client version x server version ---------------------------


@pytest.mark.parametrize("server_version", [None, 1.1, 2])
@pytest.mark.parametrize("client", ["1.1", "2"])
@pytest.mark.parametrize(("tls_on", "tls_engine"), [(False, "auto"), *with_engines(True)])
@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_matrix(
    serve, tmp_path, family: str, tls_on: bool, tls_engine: Any, client: str, server_version
) -> None:
    where = {"path": str(tmp_path / "s")} if family == "unix" else {}
    ctx = h2_context(tls_engine, "localhost", server_version) if tls_on else None
    running = serve(echo, tls=tls_on, ctx=ctx, version=server_version, **where)
    h2_client = client == "2"
    transport = httpx.HTTPTransport(
        uds=where.get("path"), http1=not h2_client, http2=h2_client, verify=False, retries=0
    )
    base = f"{'https' if tls_on else 'http'}://localhost"
    if family == "tcp":
        base += f":{running.port}"
    served = server_version is None or (server_version == 2) == h2_client
    with httpx.Client(transport=transport, timeout=TIMEOUT) as c:
        if not served:
            with pytest.raises(httpx.HTTPError):
                c.get(base + "/")
            return
        r = c.post(base + "/m", content=b"body")
    assert r.http_version == ("HTTP/2" if h2_client else "HTTP/1.1")
    assert (r.content, r.headers["x-scheme"]) == (b"body", "https" if tls_on else "http")


@pytest.mark.parametrize("kind", ["priority", "empty-data"])
def test_priority_and_empty_frame_floods_get_enhance_your_calm(serve, raw, kind: str) -> None:
    running = serve(echo)
    client = raw(running)
    sid = client.get("/", end=False)
    for _ in range(2000):
        if kind == "priority":
            client.conn.prioritize(sid, weight=16)
        else:
            client.conn.send_data(sid, b"")
    events = attack(client, client.conn.data_to_send())
    assert goaway(events).error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert_serves_echo(running)


def assert_serves_echo(running: Running) -> None:
    with prior_knowledge(running) as client:
        assert client.post("/", content=b"ok").content == b"ok"


def read_frames(sock: socket.socket) -> list[Any]:
    """Every frame until the server closes (bounded by the socket timeout)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def test_close_before_the_first_request_still_serves_it(serve) -> None:
    """A retiring worker serves a connection the master just handed it, as on HTTP/1."""
    running = serve(hello)
    with running.connect() as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        sock.recv(65536)  # the server's SETTINGS: the connection is HTTP/2 now
        running.call(running.server.close)
        conn.send_headers(1, REQUEST, end_stream=True)
        sock.sendall(conn.data_to_send())
        frames = read_frames(sock)
    kinds = [(type(f).__name__, f.stream_id) for f in frames]
    assert ("HeadersFrame", 1) in kinds and ("DataFrame", 1) in kinds, kinds
    goaways = [f for f in frames if f.type == 0x7]
    # RFC 9113 section 6.8: the warning (2^31-1), then the last stream (this client sends no
    # PING ACK, so the second comes after PING_WAIT)
    assert [(g.last_stream_id, g.error_code) for g in goaways] == [(2**31 - 1, 0), (1, 0)]
