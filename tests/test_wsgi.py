"""WSGI (PEP 3333) through prefork.wsgi.onstream, on real servers and real clients.

Servers are conftest ``serve(...)`` fixtures on 127.0.0.1 port 0 (plain, ``tls=True``, HTTP/2
with prior knowledge or ALPN); clients are raw sockets (to control every byte of a request),
httpx (HTTP/1.1 and HTTP/2) and curl. Applications that must be held at a point wait on a
``threading.Event`` that the test sets, bounded by a timeout; nothing sleeps to synchronise.
Framework tests (Flask, Django) are in test_wsgi_frameworks.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest

from prefork import wsgi
from tests.conftest import Running
from tests.helpers import curl, need_curl, pattern, read_response, wait_until
from tests.tls_helpers import each_engine

TIMEOUT = 10.0
WAIT = 10.0  # seconds an application or the test waits for the other side


# -- applications and clients ---------------------------------------------------------------------

FLAGS = ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated")


def environ_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with the environ as JSON (the str keys, the flags, what the others are)."""
    seen: dict[str, Any] = {k: v for k, v in environ.items() if isinstance(v, str)}
    seen.update({k: environ[k] for k in FLAGS})
    seen["wsgi.version"] = list(environ["wsgi.version"])
    errors = environ["wsgi.errors"]
    seen["errors"] = all(
        callable(getattr(errors, m, None)) for m in ("write", "flush", "writelines")
    )
    seen["file_wrapper"] = environ["wsgi.file_wrapper"] is wsgi.FileWrapper
    seen["body"] = environ["wsgi.input"].read().decode("latin-1")
    seen["thread"] = threading.current_thread().name
    seen["ident"] = threading.get_ident()
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def exchange(running: Running, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a raw request (which must close the connection) and parse the response."""
    with running.connect(TIMEOUT) as sock:
        sock.sendall(request)
        raw = read_response(sock, 64 << 20)
    return parse(raw)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


def client(running: Running, h2: bool = False) -> httpx.Client:
    return httpx.Client(
        base_url=running.url, http1=not h2, http2=h2, timeout=TIMEOUT, trust_env=False
    )


@pytest.fixture(params=["h1", "h2"])
def any_client(request: Any) -> Iterator[Any]:
    """A function making an httpx client for a server: HTTP/1.1, or HTTP/2 prior knowledge."""
    made: list[httpx.Client] = []

    def make(running: Running) -> httpx.Client:
        made.append(client(running, request.param == "h2"))
        return made[-1]

    yield make
    for c in made:
        c.close()


def errors_of(caplog: Any) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "prefork.wsgi" and r.levelno >= logging.ERROR]


# -- environ ------------------------------------------------------------------------------------


def test_environ_http11(serve) -> None:
    running = serve(wsgi.onstream(environ_app))
    with running.connect(TIMEOUT) as sock:
        port = sock.getsockname()[1]
        sock.sendall(
            b"POST /a%20b/%C3%A9/x%2Fy?q=1&r=%20 HTTP/1.1\r\nHost: example.com:8080\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 5\r\nX-Multi: a\r\nX-Multi: b\r\n"
            b"Cookie: a=1\r\nCookie: b=2\r\nX_Forged: 1\r\nX-Real: 2\r\nConnection: close\r\n"
            b"\r\nhello"
        )
        status, fields, body = parse(read_response(sock))
    assert status == 200
    env = json.loads(body)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a b/\xc3\xa9/x/y"  # percent-decoded bytes as latin-1
    assert env["QUERY_STRING"] == "q=1&r=%20"
    assert env["RAW_URI"] == env["REQUEST_URI"] == "/a%20b/%C3%A9/x%2Fy?q=1&r=%20"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "5"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "8080")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.1", str(port))
    assert env["HTTP_HOST"] == "example.com:8080"
    assert env["HTTP_X_MULTI"] == "a, b"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_REAL"] == "2"
    assert "HTTP_X_FORGED" not in env  # x_forged would pass for X-Forged
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is True
    assert env["wsgi.run_once"] is False and env["wsgi.input_terminated"] is True
    assert env["errors"] and env["file_wrapper"]
    assert env["body"] == "hello"
    # the application ran in the pool, not on the loop's thread
    assert env["thread"].startswith("prefork-wsgi-")
    assert env["ident"] != running.thread.ident
    assert fields["content-length"] == str(len(body))  # added for a list response


def test_environ_http10_without_host(serve) -> None:
    running = serve(wsgi.onstream(environ_app))
    status, _, body = exchange(running, b"GET /p HTTP/1.0\r\n\r\n")
    env = json.loads(body)
    assert status == 200
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(running.port))
    assert "HTTP_HOST" not in env and "CONTENT_LENGTH" not in env
    assert env["PATH_INFO"] == "/p" and env["QUERY_STRING"] == ""


def test_environ_ipv6_host_and_default_port(serve) -> None:
    running = serve(wsgi.onstream(environ_app))
    for host, name, port in [(b"[::1]:81", "::1", "81"), (b"example.org", "example.org", "80")]:
        _, _, body = exchange(
            running, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        )
        env = json.loads(body)
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (name, port)


def test_environ_http2_prior_knowledge(serve) -> None:
    running = serve(wsgi.onstream(environ_app))
    with client(running, h2=True) as c:
        r = c.post("/h2/%7E?x=y", content=b"abc", headers={"x-a": "1", "x_b": "2"})
    assert r.http_version == "HTTP/2"
    env = r.json()
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["HTTP_HOST"] == f"127.0.0.1:{running.port}"  # from :authority
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", str(running.port))
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/h2/~", "x=y")
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_A"] == "1" and "HTTP_X_B" not in env
    assert env["body"] == "abc"


@each_engine
@pytest.mark.parametrize("h2", [False, True], ids=["h1", "h2"])
def test_environ_tls(serve, h2: bool) -> None:
    running = serve(wsgi.onstream(environ_app), tls=True)
    url = f"https://127.0.0.1:{running.port}/tls"
    with httpx.Client(http2=h2, verify=False, timeout=TIMEOUT, trust_env=False) as c:
        r = c.get(url)
    env = r.json()
    assert r.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_PROTOCOL"] == ("HTTP/2" if h2 else "HTTP/1.1")
    assert env["SERVER_PORT"] == str(running.port)


def test_root_path_is_script_name(serve) -> None:
    running = serve(wsgi.onstream(environ_app, root_path="/app/"))
    with client(running) as c:
        inside = c.get("/app/x/y").json()
        root = c.get("/app").json()
        outside = c.get("/apple").json()
    assert (inside["SCRIPT_NAME"], inside["PATH_INFO"]) == ("/app", "/x/y")
    assert (root["SCRIPT_NAME"], root["PATH_INFO"]) == ("/app", "")
    assert (outside["SCRIPT_NAME"], outside["PATH_INFO"]) == ("/app", "/apple")
    with pytest.raises(ValueError, match="root_path"):
        wsgi.onstream(environ_app, root_path="app")
    with pytest.raises(ValueError, match="threads"):
        wsgi.onstream(environ_app, threads=0)


def test_wsgi_errors_goes_to_logging(serve, caplog) -> None:
    def app(environ, start_response):
        print("first line\nsecond line", file=environ["wsgi.errors"])
        environ["wsgi.errors"].writelines(["third\n"])
        environ["wsgi.errors"].flush()
        start_response("204 No Content", [])
        return []

    running = serve(wsgi.onstream(app))
    with client(running) as c:
        assert c.get("/").status_code == 204
    assert [r.getMessage() for r in errors_of(caplog)] == ["first line", "second line", "third"]


# -- wsgi.input -------------------------------------------------------------------------------


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def chunked(*pieces: bytes) -> bytes:
    return b"".join(chunk(p) for p in pieces) + b"0\r\n\r\n"


def test_input_readline_on_a_chunked_body(serve) -> None:
    """Lines that span chunks, readline(size), read(n) across chunks, readlines, iteration;
    the client sends the next pieces only after the application read the first line."""
    lines: queue.Queue[bytes] = queue.Queue()

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        lines.put(inp.readline())
        got = [inp.readline(), inp.readline(3), inp.readline(), inp.read(4), inp.read(0)]
        got += [inp.readlines(1), list(inp), inp.readline(), inp.read()]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps([repr(g) for g in got]).encode()]

    running = serve(wsgi.onstream(app))
    with running.connect(TIMEOUT) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + chunk(b"line1\nli")
        )
        assert lines.get(timeout=WAIT) == b"line1\n"
        sock.sendall(chunk(b"ne2"))
        sock.sendall(chunked(b"\nabcdef\n1234", b"56\nx\ny\nz", b"\nlast"))
        status, _, body = parse(read_response(sock))
    assert status == 200
    assert json.loads(body) == [
        repr(b"line2\n"),
        repr(b"abc"),
        repr(b"def\n"),
        repr(b"1234"),
        repr(b""),
        repr([b"56\n"]),
        repr([b"x\n", b"y\n", b"z\n", b"last"]),
        repr(b""),
        repr(b""),
    ]


def test_input_content_length_read_in_pieces_and_expect_100(serve, any_client) -> None:
    upload = pattern(3 << 20)

    def app(environ, start_response):
        inp, h, n = environ["wsgi.input"], hashlib.sha256(), 0
        while data := inp.read(100_000):
            h.update(data)
            n += len(data)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{n} {h.hexdigest()}".encode()]

    running = serve(wsgi.onstream(app))
    expected = f"{len(upload)} {hashlib.sha256(upload).hexdigest()}"
    assert any_client(running).post("/", content=upload).text == expected
    chunks = (upload[i : i + 70_000] for i in range(0, len(upload), 70_000))
    assert any_client(running).post("/", content=chunks).text == expected  # chunked / no length


@need_curl
def test_input_with_expect_100_continue_from_curl(serve, tmp_path: Path) -> None:
    upload = pattern(2 << 20)
    (tmp_path / "up").write_bytes(upload)

    def app(environ, start_response):
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [
            environ.get("HTTP_EXPECT", "-").encode(),
            b" ",
            hashlib.sha256(data).hexdigest().encode(),
        ]

    running = serve(wsgi.onstream(app))
    done = curl("-H", "Expect: 100-continue", "--data-binary", f"@{tmp_path / 'up'}", running.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == f"100-continue {hashlib.sha256(upload).hexdigest()}"


def tcp_rmem_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 6 << 20


@pytest.mark.timeout(120)
def test_input_back_pressure_on_a_64_mib_chunked_upload(serve) -> None:
    """A slow reader: what the client has sent beyond what the application has read stays
    within the socket buffers and the stream's high-water mark, far from the 64 MiB sent.

    The connection is a socketpair with small buffers given to the server (``add_socket``),
    so that the kernel's share of the bound is small and known (TCP buffers autotune to
    tens of MiB on loopback)."""
    total, piece = 64 << 20, 64 << 10
    sent = [0]
    stats = {"gap": 0}
    block = pattern(piece)

    def app(environ, start_response):
        inp, h, n = environ["wsgi.input"], hashlib.sha256(), 0
        while data := inp.read(piece):
            n += len(data)
            h.update(data)
            stats["gap"] = max(stats["gap"], sent[0] - n)
            time.sleep(0.001)  # the slow application under test, not a synchronisation
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{n} {h.hexdigest()}".encode()]

    running = serve(wsgi.onstream(app))
    ours, theirs = socket.socketpair()
    for s in (ours, theirs):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    running.call(lambda: running.server.add_socket(theirs))
    expected = hashlib.sha256()
    with ours:
        ours.settimeout(60)
        ours.sendall(b"PUT /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(total // piece):
            data = i.to_bytes(8, "big") + block[8:]
            expected.update(data)
            ours.sendall(chunk(data))
            sent[0] += len(data)
        ours.sendall(b"0\r\n\r\nGET /done HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = read_response(ours)
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert f"{total} {expected.hexdigest()}".encode() in raw
    # the stream's 256 KiB high-water mark, one read of the transport, the chunk the
    # application holds, the socket buffers: about 1 MiB
    assert 0 < stats["gap"] < 4 << 20, stats


def test_input_body_too_large_is_413_without_a_traceback(serve, caplog) -> None:
    """The stream's ProtocolError reaches the application's read and, let through, answers
    its status. (The second chunk is sent once the first was read: see the report on a
    chunked body over the limit that is already buffered, which answers 400.)"""
    first = threading.Event()

    def app(environ, start_response):
        environ["wsgi.input"].read(600)
        first.set()
        environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b"read it all"]

    running = serve(wsgi.onstream(app), max_body_size=1000)
    with running.connect(TIMEOUT) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"x" * 600)
        )
        assert first.wait(WAIT)
        sock.sendall(chunked(b"y" * 600))
        status, _, body = parse(read_response(sock))
    assert (status, body) == (413, b"413 Request Entity Too Large\n")
    assert errors_of(caplog) == []


def test_input_timeout_is_408(serve, caplog) -> None:
    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b"never"]

    running = serve(wsgi.onstream(app, input_timeout=0.3))
    status, _, body = exchange(
        running, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
    )
    assert (status, body) == (408, b"408 Request Timeout\n")
    assert errors_of(caplog) == []


# -- the response ----------------------------------------------------------------------------


def test_each_chunk_leaves_when_yielded(serve, any_client) -> None:
    """The application holds its second chunk until the client has read the first."""
    got_first = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first;"
        assert got_first.wait(WAIT), "the first chunk did not reach the client"
        yield b"second"

    running = serve(wsgi.onstream(app))
    c = any_client(running)
    with c.stream("GET", "/") as r:
        pieces = r.iter_raw()
        assert next(pieces) == b"first;"
        got_first.set()
        assert b"".join(pieces) == b"second"


def test_write_callable(serve, any_client) -> None:
    """The legacy write(): its data leaves before it returns; the iterable follows."""
    got_first = threading.Event()

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        assert got_first.wait(WAIT), "write() data did not reach the client"
        write(b"")
        write(bytearray(b"more;"))
        return [b"returned"]

    running = serve(wsgi.onstream(app))
    with any_client(running).stream("GET", "/") as r:
        pieces = r.iter_raw()
        assert next(pieces) == b"written;"
        got_first.set()
        assert b"".join(pieces) == b"more;returned"


def test_no_head_before_the_first_non_empty_chunk(serve, any_client) -> None:
    """start_response may be replaced with exc_info up to the first non-empty chunk."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""
        try:
            raise KeyError("late")
        except KeyError:
            start_response("503 Busy", [("Retry-After", "1")], sys.exc_info())
        yield b"busy"

    running = serve(wsgi.onstream(app))
    r = any_client(running).get("/")
    assert (r.status_code, r.headers["retry-after"], r.text) == (503, "1", "busy")


def test_exc_info_after_the_head_reraises_and_cuts_off(serve, any_client, caplog) -> None:
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        if environ["PATH_INFO"] == "/broken":
            try:
                raise LookupError("broke mid-body")
            except LookupError:
                start_response("500 Oops", [], sys.exc_info())  # re-raises LookupError
        yield b" fine"

    running = serve(wsgi.onstream(app))
    c = any_client(running)
    with pytest.raises(httpx.HTTPError):  # an unfinished chunked body, or a reset stream
        c.get("/broken")
    [record] = errors_of(caplog)
    assert record.exc_info is not None and record.exc_info[0] is LookupError
    assert any_client(running).get("/").text == "partial fine"  # the server serves on


def test_start_response_twice_without_exc_info_is_500(serve, caplog) -> None:
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"x"]

    running = serve(wsgi.onstream(app))
    with client(running) as c:
        r = c.get("/")
    assert (r.status_code, r.text) == (500, "500 Internal Server Error\n")
    [record] = errors_of(caplog)
    assert "second time" in str(record.exc_info[1])  # type: ignore[index]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200", [("Connection", "close")]),
        ("200 OK", [("Transfer-Encoding", "chunked")]),
        ("200 OK", [("Keep-Alive", "timeout=5")]),
        ("200 OK", [("Upgrade", "h2c")]),
        ("200 OK", [("X-Bad", "a\r\nInjected: yes")]),
        ("200 OK", [("Bad Name", "x")]),
        ("200 OK", [("X-Uni", "\u2603")]),
        ("200 OK", [("Content-Length", "-1")]),
        ("200 OK", [("X-Pair",)]),
        ("200 OK", [(b"X-Bytes", "v")]),
        ("20 OK", []),
        ("100 Continue", []),
        ("200 OK\r\nX: y", []),
        (200, []),
    ],
)
def test_bad_heads_are_refused(serve, caplog, status: Any, headers: Any) -> None:
    def app(environ, start_response):
        start_response(status, headers)
        return [b"body"]

    running = serve(wsgi.onstream(app))
    with client(running) as c:
        assert c.get("/").status_code == 500
    [record] = errors_of(caplog)
    assert record.exc_info is not None and record.exc_info[0] in (ValueError, TypeError)


def test_status_without_reason_and_latin1_values_are_fine(serve) -> None:
    def app(environ, start_response):
        start_response("299", [("X-Latin", "caf\xe9")])
        return [b"ok"]

    running = serve(wsgi.onstream(app))
    status, fields, body = exchange(
        running, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert (status, fields["x-latin"], body) == (299, "caf\xe9", b"ok")


def test_head_request(serve, any_client) -> None:
    def app(environ, start_response):
        body = b"x" * 1000
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return iter([body])

    running = serve(wsgi.onstream(app))
    c = any_client(running)
    r = c.head("/")
    assert (r.status_code, r.headers["content-length"], r.content) == (200, "1000", b"")
    assert len(c.get("/").content) == 1000  # the same connection goes on


def test_head_request_raw_keeps_the_connection(serve) -> None:
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    running = serve(wsgi.onstream(app))
    with running.connect(TIMEOUT) as sock:
        sock.sendall(
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        raw = read_response(sock)
    head, rest = raw.split(b"\r\n\r\n", 1)
    assert b"content-length: 5" in head.lower()  # what GET would carry (RFC 9110 section 9.3.2)
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"\r\n\r\nhello")


def test_content_length_mismatch_cuts_off(serve, caplog) -> None:
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        yield b"short"

    running = serve(wsgi.onstream(app))
    status, fields, body = exchange(running, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, fields["content-length"], body) == (200, "10", b"short")  # then closed
    assert any("cut off" in r.getMessage() for r in errors_of(caplog))


def test_more_than_content_length_is_500_while_nothing_was_sent(serve, caplog) -> None:
    """The chunk that completes the content-length is held for the end of the response, so a
    chunk past it is still an error the client can be told about."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "4")])
        yield b"full"
        yield b"extra"

    running = serve(wsgi.onstream(app))
    with client(running) as c:
        assert c.get("/").status_code == 500
    [record] = errors_of(caplog)
    assert "content-length" in str(record.exc_info[1])  # type: ignore[index]


@pytest.mark.parametrize(
    "returned",
    [lambda: [b"end"], lambda: (b"e", b"nd"), lambda: iter([b"end"])],
    ids=["list", "tuple", "iterator"],
)
def test_write_then_return_with_content_length(serve, any_client, returned: Any) -> None:
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Length", "10")])
        write(b"writ")
        write(b"ten")
        return returned()

    running = serve(wsgi.onstream(app))
    c = any_client(running)
    r = c.get("/")
    assert (r.headers["content-length"], r.content) == ("10", b"writtenend")
    assert c.get("/").content == b"writtenend"  # the same connection goes on


# -- errors, close(), disconnects --------------------------------------------------------------


class Closing:
    """An iterable with close(): ``chunks`` pieces of ``size`` bytes (None: without end)."""

    def __init__(self, chunks: int | None, size: int = 65536, fail_at: int | None = None):
        self.chunks, self.size, self.fail_at = chunks, size, fail_at
        self.yielded = 0
        self.closed = threading.Event()

    def __iter__(self) -> Closing:
        return self

    def __next__(self) -> bytes:
        if self.yielded == self.fail_at:
            raise RuntimeError("failed mid-body")
        if self.chunks is not None and self.yielded >= self.chunks:
            raise StopIteration
        self.yielded += 1
        return b"x" * self.size

    def close(self) -> None:
        self.closed.set()


def closing_app(result: Closing) -> Any:
    """Serve ``result`` at /it, a short "ok" elsewhere."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return result if environ["PATH_INFO"] == "/it" else [b"ok"]

    return app


def test_close_is_called_after_a_complete_response(serve, any_client) -> None:
    result = Closing(3)
    running = serve(wsgi.onstream(closing_app(result)))
    assert len(any_client(running).get("/it").content) == 3 * 65536
    assert result.closed.wait(WAIT)


def test_slow_client_holds_its_thread_and_close_runs_on_disconnect(serve) -> None:
    """A client reading slowly: the application produces only as far ahead as the buffers
    allow (its thread waits while the transport is paused); when the client goes away the
    iteration stops and close() is called; the server serves on."""
    result = Closing(None)
    running = serve(wsgi.onstream(closing_app(result)))
    gap = 0
    with running.connect(TIMEOUT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        sock.sendall(b"GET /it HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        while received < 8 << 20:
            received += len(sock.recv(65536))
            gap = max(gap, result.yielded * 65536 - received)
            time.sleep(0.0005)  # the slow client under test, not a synchronisation
    assert result.closed.wait(WAIT), "close() was not called after the client left"
    assert gap < (4 << 20) + tcp_rmem_max()
    stopped = result.yielded
    with client(running) as c:
        assert c.get("/").text == "ok"
    assert result.yielded == stopped  # not producing any more


def h2_events(sock: socket.socket, conn: Any, until: Any) -> list[Any]:
    """Read HTTP/2 events from ``sock`` until ``until(event)`` is true for one of them."""
    got: list[Any] = []
    while not any(until(e) for e in got):
        data = sock.recv(65536)
        assert data, f"closed before the event: {got}"
        got += conn.receive_data(data)
        sock.sendall(conn.data_to_send())
    return got


def test_a_client_that_reads_nothing_is_cut_off_after_write_timeout(serve) -> None:
    """The application's thread waits at its next chunk while the client reads nothing; after
    the server's write_timeout the connection is cut off and close() runs."""
    result = Closing(None)
    running = serve(wsgi.onstream(closing_app(result)), write_timeout=0.5)
    with running.connect(TIMEOUT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        sock.sendall(b"GET /it HTTP/1.1\r\nHost: x\r\n\r\n")
        assert result.closed.wait(WAIT), "close() was not called"
    assert result.yielded * 65536 < (4 << 20) + tcp_rmem_max()


def test_close_runs_when_an_http2_client_resets_the_stream(serve) -> None:
    """RST_STREAM mid-body: the waiting write fails, the iteration stops, close() runs; the
    connection's other streams go on."""
    result = Closing(None)
    running = serve(wsgi.onstream(closing_app(result)))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    request = [(":method", "GET"), (":scheme", "http"), (":authority", "x")]
    with running.connect(TIMEOUT) as sock:
        conn.send_headers(1, [*request, (":path", "/it")], end_stream=True)
        sock.sendall(conn.data_to_send())
        h2_events(sock, conn, lambda e: isinstance(e, h2.events.DataReceived))
        conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        sock.sendall(conn.data_to_send())
        assert result.closed.wait(WAIT), "close() was not called after RST_STREAM"
        conn.send_headers(3, [*request, (":path", "/")], end_stream=True)
        sock.sendall(conn.data_to_send())
        events = h2_events(
            sock, conn, lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == 3
        )
    body = b"".join(
        e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == 3
    )
    assert body == b"ok"


def test_app_error_before_the_head_is_500_and_logged(serve, any_client, caplog) -> None:
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise ZeroDivisionError("boom")
        start_response("200 OK", [])
        return [b"fine"]

    running = serve(wsgi.onstream(app))
    c = any_client(running)
    r = c.get("/boom")
    assert (r.status_code, r.text) == (500, "500 Internal Server Error\n")
    [record] = errors_of(caplog)
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    assert "GET /boom" in record.getMessage()
    assert c.get("/").text == "fine"


def test_app_error_after_the_head_cuts_off_and_close_is_called(serve, any_client, caplog) -> None:
    result = Closing(None, 1000, fail_at=2)
    running = serve(wsgi.onstream(closing_app(result)))
    c = any_client(running)
    with pytest.raises(httpx.HTTPError):
        c.get("/it")
    assert result.closed.wait(WAIT)
    [record] = errors_of(caplog)
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert any_client(running).get("/").text == "ok"


@pytest.mark.parametrize("kind", ["no-start-response", "str-chunk", "none"])
def test_application_contract_errors_are_500(serve, caplog, kind: str) -> None:
    def app(environ, start_response):
        if kind == "no-start-response":
            return [b"x"]
        start_response("200 OK", [])
        return ["text"] if kind == "str-chunk" else None

    running = serve(wsgi.onstream(app))
    with client(running) as c:
        assert c.get("/").status_code == 500
    assert len(errors_of(caplog)) == 1


# -- threads ----------------------------------------------------------------------------------


def test_a_slow_app_does_not_stall_other_requests(serve, any_client) -> None:
    """/slow is held (it stands for an application sleeping); /fast is answered meanwhile,
    on the same server, by the other threads."""
    release, started = threading.Event(), threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            started.set()
            release.wait(WAIT)
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    running = serve(wsgi.onstream(app, threads=2))
    slow: list[httpx.Response] = []

    def get_slow() -> None:
        with client(running) as c:
            slow.append(c.get("/slow"))

    thread = threading.Thread(target=get_slow)
    thread.start()
    try:
        assert started.wait(WAIT)
        c = any_client(running)
        for _ in range(5):
            assert c.get("/fast").text == "/fast"
        assert not slow, "the slow request finished before it was released"
    finally:
        release.set()
        thread.join(WAIT)
    assert slow[0].text == "/slow"


def test_the_pool_is_bounded(serve) -> None:
    """No more than ``threads`` applications run at once; the others wait their turn."""
    release = threading.Event()
    lock = threading.Lock()
    active, most, names = [0], [0], set()

    def app(environ, start_response):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            names.add(threading.current_thread().name)
        release.wait(WAIT)
        with lock:
            active[0] -= 1
        start_response("200 OK", [])
        return [b"ok"]

    running = serve(wsgi.onstream(app, threads=3))
    results: list[int] = []

    def get() -> None:
        with client(running) as c:
            results.append(c.get("/").status_code)

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: active[0] == 3, WAIT, "three applications running")
    release.set()
    for t in threads:
        t.join(WAIT)
    assert results == [200] * 8
    assert most[0] == 3
    assert len(names) == 3


# -- wsgi.file_wrapper -------------------------------------------------------------------------


class NoRead(io.FileIO):
    """A real file whose contents cannot be read through Python: only sendfile(2) sends it."""

    def read(self, *args: Any) -> bytes:
        raise AssertionError("read through Python")

    def readinto(self, *args: Any) -> int:
        raise AssertionError("read through Python")

    def readall(self) -> bytes:
        raise AssertionError("read through Python")


def test_file_wrapper_uses_sendfile(serve, tmp_path: Path) -> None:
    data = pattern(3 << 20)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    files: list[NoRead] = []

    def app(environ, start_response):
        f = NoRead(path)
        files.append(f)
        if environ["PATH_INFO"] == "/part":
            f.seek(100)
            start_response("200 OK", [("Content-Length", "1000")])
        else:
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 65536)

    running = serve(wsgi.onstream(app))
    with client(running) as c:
        r = c.get("/")
        assert r.headers["content-length"] == str(len(data))
        assert r.content == data
        assert c.get("/part").content == data[100:1100]
    # close() follows the last byte's leaving, in the application's thread
    wait_until(lambda: len(files) == 2 and all(f.closed for f in files), WAIT, "files closed")


@pytest.mark.parametrize("mode", ["h2", "tls", "bytesio"])
def test_file_wrapper_without_sendfile(serve, tmp_path: Path, mode: str) -> None:
    data = pattern(1 << 20)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    opened: list[Any] = []

    def app(environ, start_response):
        f = io.BytesIO(data) if mode == "bytesio" else open(path, "rb")  # noqa: SIM115
        opened.append(f)
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](f)

    running = serve(wsgi.onstream(app), tls=mode == "tls")
    url = f"{'https' if mode == 'tls' else 'http'}://127.0.0.1:{running.port}/"
    h2 = mode == "h2"
    with httpx.Client(http1=not h2, http2=h2, verify=False, timeout=TIMEOUT, trust_env=False) as c:
        assert c.get(url).content == data
    wait_until(lambda: opened[0].closed, WAIT, "the file closed")


def test_the_worker_serves_on_after_client_errors(serve) -> None:
    """Resets mid-upload and mid-download leave the server serving."""

    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b"y" * (1 << 20)]

    running = serve(wsgi.onstream(app))
    for _ in range(3):
        sock = running.connect(TIMEOUT)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset
    with client(running) as c:
        assert len(c.post("/", content=b"abc").content) == 1 << 20


def test_example_app(serve) -> None:
    """examples/wsgi_app.py, served by its own onstream."""
    path = Path(__file__).parent.parent / "examples" / "wsgi_app.py"
    spec = importlib.util.spec_from_file_location("prefork_example_wsgi_app", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    running = serve(wsgi.onstream(example.app, threads=2))
    upload = pattern(300_000)
    with client(running) as c:
        assert c.get("/").text == "Hello world!\n"
        assert c.post("/echo", content=iter([upload[:1000], upload[1000:]])).content == upload
        assert c.get("/count", params={"n": "2"}).text == "1\n2\n"
        assert c.get("/source").content == path.read_bytes()
        assert c.get("/nope").status_code == 404
