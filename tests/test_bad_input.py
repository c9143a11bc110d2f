"""Bad input on real sockets: every malformed or oversized request gets its status and a close.

Data-driven like gunicorn's ``tests/requests/invalid``: each case is raw bytes sent on a fresh
connection, the status the server must answer with (RFC 9110/9112), and the server options it
runs with. For every case the response must carry ``connection: close``, the server must then
close the connection (the client reads to EOF), and a normal request on a new connection must
still get 200 with nothing reported out of ``server.loop()``.

Then the misbehaving clients: vanishing mid-body or mid-response, slowloris, silent
connections, and handlers that raise or forget to answer.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import Running, hello, response_headers

READ_TIMEOUT = 3.0  # a server that never answers fails fast, well under pytest-timeout
WAIT = 5.0  # bounded waits on handler events


# -- helpers ----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    version: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]


def parse_reply(data: bytes) -> Reply:
    """Parse one complete response (head + content-length body) read up to EOF."""
    assert data, "the server closed the connection without answering"
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"incomplete response head: {data[:200]!r}"
    lines = head.split(b"\r\n")
    version, status, *_ = lines[0].split(b" ", 2)
    assert version in (b"HTTP/1.1", b"HTTP/1.0"), lines[0]
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        assert colon, f"bad response header line {line!r}"
        headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
    reply = Reply(int(status), version, headers, body)
    lengths = reply.get("content-length")
    assert len(lengths) == 1, f"error responses are framed by one content-length: {headers}"
    assert len(body) == int(lengths[0]), f"body {body!r} does not match {lengths}"
    return reply


def send_and_read(running: Running, data: bytes, timeout: float = READ_TIMEOUT) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with running.connect(timeout) as sock:
        # The server may answer and close before taking every byte.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def assert_still_serving(running: Running) -> None:
    """A fresh connection gets a normal 200 and the server loop reported nothing."""
    data = send_and_read(running, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reply = parse_reply(data)
    assert reply.status == 200, data
    assert reply.body == b"Hello world!\n"
    assert running.thread.is_alive()
    assert running.errors == []


def assert_closed_silently(sock: socket.socket) -> None:
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        data = b""
    assert data == b"", f"expected a silent close, got {data[:200]!r}"


def tls_client_hello() -> bytes:
    """The first bytes a real TLS client sends: a ClientHello record made by the ssl module."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    data = outgoing.read()
    assert data[0] == 0x16 and data[5] == 0x01  # handshake record, ClientHello
    return data


# -- the data-driven cases -----------------------------------------------------------------------

H = b"Host: x\r\n"
POST = b"POST / HTTP/1.1\r\n" + H


@dataclass
class Case:
    id: str
    request: bytes | None  # None: built by the test (TLS ClientHello)
    status: int
    options: dict[str, Any] = field(default_factory=dict)


CASES = [
    # Request line (RFC 9112 section 3)
    Case("request-line-missing-version", b"GET /\r\n" + H + b"\r\n", 400),
    Case("request-line-only-method", b"GET\r\n" + H + b"\r\n", 400),
    Case("request-line-garbage", b"\x01\x02\x03 garbage \xff\r\n" + H + b"\r\n", 400),
    Case("request-line-double-space", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    Case("request-line-trailing-space", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400),
    Case("method-not-a-token", b"G(ET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    Case("nul-in-target", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    Case("space-in-target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    # HTTP version (RFC 9112 section 2.3): HTTP-name is case-sensitive; a major version this
    # server does not speak is 505 (RFC 9110 section 15.6.6), a malformed one is 400.
    Case("version-http2-text", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    Case("version-1.x", b"GET / HTTP/1.x\r\n" + H + b"\r\n", 400),
    Case("version-lowercase", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    Case("version-missing-minor", b"GET / HTTP/1\r\n" + H + b"\r\n", 400),
    # Header names (RFC 9112 section 5.1: whitespace before the colon MUST get 400)
    Case("header-space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"Foo : bar\r\n\r\n", 400),
    Case("header-name-non-token", b"GET / HTTP/1.1\r\n" + H + b"Fo(o: bar\r\n\r\n", 400),
    Case("header-name-empty", b"GET / HTTP/1.1\r\n" + H + b": bar\r\n\r\n", 400),
    Case("header-without-colon", b"GET / HTTP/1.1\r\n" + H + b"Foo bar\r\n\r\n", 400),
    Case("whitespace-before-first-header", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    # Header values (RFC 9110 section 5.5: NUL and lone CR are invalid)
    Case("header-value-nul", b"GET / HTTP/1.1\r\n" + H + b"Foo: a\x00b\r\n\r\n", 400),
    Case("header-value-lone-cr", b"GET / HTTP/1.1\r\n" + H + b"Foo: a\rb\r\n\r\n", 400),
    # obs-fold (RFC 9112 section 5.2: a server MUST reject it or replace it; we reject)
    Case("obs-fold-space", b"GET / HTTP/1.1\r\n" + H + b"Foo: a\r\n b\r\n\r\n", 400),
    Case("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"Foo: a\r\n\tb\r\n\r\n", 400),
    # Host (RFC 9112 section 3.2: missing in 1.1, or more than one, is 400)
    Case("missing-host-http11", b"GET / HTTP/1.1\r\n\r\n", 400),
    Case("two-host-headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    # Message framing, smuggling vectors (RFC 9112 section 6.3)
    Case(
        "content-length-and-transfer-encoding",
        POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "transfer-encoding-and-content-length",
        POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "two-content-length-same",
        POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    Case(
        "two-content-length-different",
        POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    Case("content-length-list", POST + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    Case("content-length-negative", POST + b"Content-Length: -1\r\n\r\n", 400),
    Case("content-length-non-numeric", POST + b"Content-Length: abc\r\n\r\n", 400),
    Case("content-length-plus-sign", POST + b"Content-Length: +3\r\n\r\nabc", 400),
    Case("content-length-hex", POST + b"Content-Length: 0x3\r\n\r\nabc", 400),
    # Chunked bodies (RFC 9112 section 7.1)
    Case(
        "chunk-size-invalid",
        POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "chunk-size-too-many-digits",
        POST + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 32 + b"\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    # 2**64: wraps to 0 in a 64-bit parser in front of us (smuggling); section 7.1 says to
    # guard against such overflow, so it must be refused, not awaited.
    Case(
        "chunk-size-overflow-64-bit",
        POST + b"Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "chunk-data-longer-than-size",
        POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "chunk-size-bare-lf",
        POST + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        400,
    ),
    Case(
        "chunk-trailer-bare-lf",
        POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-A: 1\nX-B: 2\r\n\r\n",
        400,
    ),
    Case(
        "transfer-encoding-gzip",  # RFC 9112 section 6.3: chunked is not last -> 400
        POST + b"Transfer-Encoding: gzip\r\n\r\n",
        400,
    ),
    Case(
        "transfer-encoding-chunked-twice",
        POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n",
        400,
    ),
    Case(
        "transfer-encoding-chunked-then-gzip-lines",
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        400,
    ),
    # RFC 9112 section 3.2: a Host with an invalid value -> 400
    Case("host-with-space", b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n", 400),
    Case("host-with-path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    Case("host-with-userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    Case("host-bad-port", b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
    Case(
        "transfer-encoding-gzip-chunked",
        POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    Case(
        "transfer-encoding-in-http10",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    # Bare LF line endings (RFC 9112 section 2.2 lets a server refuse them; this one does)
    Case("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    Case("bare-lf-after-request-line", b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
    Case("bare-lf-in-header-section", b"GET / HTTP/1.1\r\nHost: x\nFoo: bar\r\n\r\n", 400),
    # Limits (server options)
    Case(
        "request-line-too-long",
        b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n" + H + b"\r\n",
        414,
        {"max_request_line": 100},
    ),
    Case(
        "too-many-headers",
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(10)) + b"\r\n",
        431,
        {"max_header_count": 5},
    ),
    Case(
        "header-section-too-big",
        b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 2000 + b"\r\n\r\n",
        431,
        {"max_head_size": 1024},
    ),
    Case(
        "body-too-big-content-length",
        POST + b"Content-Length: 100\r\n\r\n" + b"a" * 100,
        413,
        {"max_body_size": 16},
    ),
    Case(
        "body-too-big-chunked",
        POST + b"Transfer-Encoding: chunked\r\n\r\n20\r\n" + b"a" * 32 + b"\r\n0\r\n\r\n",
        413,
        {"max_body_size": 16},
    ),
    Case(
        "body-too-big-many-chunks",
        POST + b"Transfer-Encoding: chunked\r\n\r\n" + b"4\r\naaaa\r\n" * 8 + b"0\r\n\r\n",
        413,
        {"max_body_size": 16},
    ),
    # Not HTTP at all
    Case("tls-client-hello", None, 400),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request_gets_status_and_close(serve, case: Case) -> None:
    # A short idle timeout: a server that waits instead of answering closes before
    # READ_TIMEOUT, and the test fails on "closed without answering" rather than hanging.
    options = {"intra_stream_timeout": 2.0, **case.options}
    running = serve(hello, **options)
    request = case.request if case.request is not None else tls_client_hello()
    data = send_and_read(running, request)
    reply = parse_reply(data)
    assert reply.status == case.status, data
    assert "close" in [v.lower() for v in reply.get("connection")], data
    assert_still_serving(running)


def test_bad_request_after_good_one_on_keep_alive(serve) -> None:
    """Pipelined: the good request is answered in full, then the bad one gets 400 and a close."""
    running = serve(hello)
    data = send_and_read(
        running,
        b"GET / HTTP/1.1\r\n" + H + b"\r\n" + b"GET / HTTP/1.1\r\n" + H + b"Foo : bar\r\n\r\n",
    )
    first, sep, rest = data.partition(b"Hello world!\n")
    assert sep, data
    assert first.startswith(b"HTTP/1.1 200 "), data
    assert b"connection: close" not in first.lower()
    reply = parse_reply(rest)
    assert reply.status == 400
    assert reply.get("connection") == ["close"]
    assert_still_serving(running)


def test_leading_empty_line_is_ignored(serve) -> None:
    """RFC 9112 section 2.2: a server SHOULD ignore an empty line before the request line."""
    running = serve(hello)
    data = send_and_read(running, b"\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reply = parse_reply(data)
    assert reply.status == 200, data
    assert reply.body == b"Hello world!\n"


def test_lowercase_method_is_a_valid_token(serve) -> None:
    """RFC 9110 section 9.1: methods are case-sensitive tokens; ``get`` is an unknown method,
    not a malformed request. It reaches the handler as sent."""
    methods: list[str] = []

    async def onstream(server, stream):
        headers = await stream.get_headers()
        methods.append(headers.get(":method"))
        await hello(server, stream)

    running = serve(onstream)
    data = send_and_read(running, b"get / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert parse_reply(data).status == 200, data
    assert methods == ["get"]


def test_empty_line_between_keep_alive_requests_is_ignored(serve) -> None:
    """Old clients send CRLF after a POST body; the next request on the connection still works."""
    running = serve(hello)
    data = send_and_read(
        running,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\n"
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert data.count(b"HTTP/1.1 200 ") == 2, data
    assert data.count(b"Hello world!\n") == 2
    assert running.errors == []


# -- clients that vanish --------------------------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Make close() send RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_vanishes_mid_request_body(serve, how: str) -> None:
    seen: list[tuple[str, Any]] = []
    started = threading.Event()
    done = threading.Event()

    async def onstream(server, stream):
        headers = await stream.get_headers()
        if headers.get(":path") != "/upload":
            await hello(server, stream)
            return
        try:
            first = await stream.get_body_chars(10, timeout=WAIT)
            seen.append(("first", first))
            started.set()
            rest = await stream.get_body_as_string(timeout=WAIT)
            seen.append(("body", rest))
        except Exception as exc:
            seen.append(("error", exc))
        finally:
            started.set()
            done.set()

    running = serve(onstream)
    with running.connect(READ_TIMEOUT) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10
        )
        assert started.wait(WAIT), "the handler never got the first body bytes"
        if how == "rst":
            _reset(sock)
    assert done.wait(WAIT), "the handler hangs after the client vanished"
    assert seen[0] == ("first", b"a" * 10)
    kind, value = seen[1]
    # A truncated body must not look like a complete one.
    assert kind == "error", f"handler got {seen[1]!r} instead of an error"
    assert isinstance(value, ConnectionResetError), repr(value)
    assert_still_serving(running)


def test_client_vanishes_mid_response(serve) -> None:
    seen: list[tuple[str, Any]] = []
    done = threading.Event()

    async def onstream(server, stream):
        headers = await stream.get_headers()
        if headers.get(":path") != "/big":
            await hello(server, stream)
            return
        await stream.write_headers(response_headers("200"), False)
        block = b"x" * 65536
        sent = 0
        try:
            while sent < 1 << 30:  # bounded: a server that never notices ends here
                await stream.write_chunk(block, False, timeout=WAIT)
                sent += len(block)
            seen.append(("completed", sent))
        except Exception as exc:
            seen.append(("error", exc))
        finally:
            done.set()

    running = serve(onstream)
    with running.connect(READ_TIMEOUT) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        _reset(sock)
    assert done.wait(WAIT), "the handler hangs writing to a vanished client"
    kind, value = seen[0]
    assert kind == "error", f"handler saw {seen[0]!r}"
    assert isinstance(value, BrokenPipeError | ConnectionResetError), repr(value)
    assert_still_serving(running)


# -- slow and silent clients -------------------------------------------------------------------


def test_slowloris_head_is_closed(serve) -> None:
    """A head trickled in, byte by byte, must not outlive intra_stream_timeout in total."""
    running = serve(hello, intra_stream_timeout=0.3)
    trickle = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    received = b""
    closed = False
    with running.connect(READ_TIMEOUT) as sock:
        start = time.monotonic()
        sock.settimeout(0.05)  # paces the trickle: one byte per 50 ms unless the server speaks
        for i in range(len(trickle)):
            try:
                sock.send(trickle[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            if not data:
                closed = True
                break
            received += data
            if time.monotonic() - start > 3:
                break
        elapsed = time.monotonic() - start
    assert closed, f"connection still open after {elapsed:.2f}s of trickling"
    assert 0.25 <= elapsed < 2.0, f"closed after {elapsed:.2f}s with intra_stream_timeout=0.3"
    assert received == b"" or received.startswith(b"HTTP/1.1 408 "), received
    assert_still_serving(running)


def test_connection_setup_timeout_closes_silent_client(serve) -> None:
    running = serve(hello, connection_setup_timeout=0.3)
    with running.connect(READ_TIMEOUT) as sock:
        start = time.monotonic()
        assert_closed_silently(sock)
        elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 2.0, f"closed after {elapsed:.2f}s with connection_setup_timeout=0.3"
    assert_still_serving(running)


def test_idle_keep_alive_connection_is_closed(serve) -> None:
    """intra_stream_timeout also bounds the idle time between requests."""
    running = serve(hello, intra_stream_timeout=0.3)
    with running.connect(READ_TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"Hello world!\n"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        start = time.monotonic()
        assert_closed_silently(sock)
        elapsed = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 200 ")
    assert 0.2 <= elapsed < 2.0, f"idle connection closed after {elapsed:.2f}s"


# -- handlers that fail --------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_handler_raising_gets_500_and_onerror(serve) -> None:
    reports: list[tuple[Any, str, BaseException, Any]] = []
    reported = threading.Event()

    def onerror(server, context, op, err, errno):
        reports.append((context, op, err, errno))
        reported.set()

    async def onstream(server, stream):
        headers = await stream.get_headers()
        if headers.get(":path") == "/boom":
            raise Boom("handler failed")
        await hello(server, stream)

    running = serve(onstream, onerror=onerror)
    data = send_and_read(running, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = parse_reply(data)
    assert reply.status == 500, data
    assert reply.get("connection") == ["close"]
    assert reported.wait(WAIT), "onerror was not called"
    assert len(reports) == 1
    _context, op, err, errno = reports[0]
    assert op == "onstream"
    assert isinstance(err, Boom) and str(err) == "handler failed"
    assert errno is None
    assert_still_serving(running)


def test_handler_returning_without_response_gets_503(serve) -> None:
    async def onstream(server, stream):
        headers = await stream.get_headers()
        if headers.get(":path") == "/nothing":
            return
        await hello(server, stream)

    running = serve(onstream)
    data = send_and_read(running, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = parse_reply(data)
    assert reply.status == 503, data
    assert reply.get("connection") == ["close"]
    assert_still_serving(running)
