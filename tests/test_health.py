"""The health path (``health_path``) and ``server.drain()``, on real sockets.

Servers are conftest ``serve(...)`` fixtures; requests are raw HTTP/1.1 on sockets (so that
the ``Connection`` field and the connection's end are seen as sent) or httpx over HTTP/2.
"""

from __future__ import annotations

import socket

import httpx
import pytest

import prefork.server
from tests.conftest import Running, hello
from tests.helpers import wait_until

TIMEOUT = 10.0


def _app_calls(calls: list[str]):
    async def onstream(server, stream):
        calls.append(stream.request_headers.get(":path"))
        await hello(server, stream)

    return onstream


def exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request, read one response framed by its Content-Length (HEAD: none)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {n.strip().lower(): v.strip() for n, _, v in (x.partition(":") for x in lines[1:])}
    length = 0 if request.startswith(b"HEAD") else int(fields.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), fields, body


def req(method: str, path: str, body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{length}\r\n".encode() + body


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed the connection (EOF, bounded by the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def requests_of(running: Running) -> int:
    return running.call(lambda: running.server.requests)


def test_health_path_is_answered_before_the_app(serve):
    calls: list[str] = []
    running = serve(_app_calls(calls), health_path="/healthz")
    with running.connect(TIMEOUT) as sock:
        status, fields, body = exchange(sock, req("GET", "/healthz"))
        assert (status, body) == (200, b"ok\n")
        assert fields["cache-control"] == "no-store"
        assert fields["content-type"] == "text/plain; charset=utf-8"
        assert "connection" not in fields  # keep-alive: the same connection goes on
        status, fields, body = exchange(sock, req("HEAD", "/healthz?from=haproxy"))
        assert (status, fields["content-length"], body) == (200, "3", b"")
        # other paths are the application's, whatever they share with the health path
        for path in ("/healthz/", "/healthzz", "/", "/x?/healthz"):
            assert exchange(sock, req("GET", path))[0] == 200
    assert calls == ["/healthz/", "/healthzz", "/", "/x?/healthz"]
    assert requests_of(running) == 4  # health checks are not the application's traffic


def test_other_methods_get_405_and_the_connection_goes_on(serve):
    calls: list[str] = []
    running = serve(_app_calls(calls), health_path="/healthz")
    with running.connect(TIMEOUT) as sock:
        status, fields, body = exchange(sock, req("POST", "/healthz", b"x" * 1000))
        assert (status, fields["allow"], body) == (405, "GET, HEAD", b"method not allowed\n")
        status, _, body = exchange(sock, req("OPTIONS", "/healthz"))
        assert status == 405
        assert exchange(sock, req("GET", "/healthz"))[:3:2] == (200, b"ok\n")
    assert calls == []


def test_off_by_default_the_path_is_the_apps(serve):
    calls: list[str] = []
    running = serve(_app_calls(calls))
    with running.connect(TIMEOUT) as sock:
        status, _, body = exchange(sock, req("GET", "/healthz"))
    assert (status, body, calls) == (200, b"Hello world!\n", ["/healthz"])
    running.call(running.server.drain)  # no health path: drain still ends keep-alive
    with running.connect(TIMEOUT) as sock:
        assert exchange(sock, req("GET", "/"))[1]["connection"] == "close"


def test_drain_turns_health_to_503_and_ends_keep_alive_after_each_response(serve):
    calls: list[str] = []
    running = serve(_app_calls(calls), health_path="/healthz")
    idle = running.connect(TIMEOUT)  # a keep-alive connection, idle when the drain begins
    with idle:
        assert exchange(idle, req("GET", "/healthz"))[0] == 200
        running.call(running.server.drain)
        # the idle connection was not closed under the client: its next request is served,
        # and its response ends the connection
        status, fields, body = exchange(idle, req("GET", "/healthz"))
        assert (status, body, fields["connection"]) == (503, b"draining\n", "close")
        assert closed_by_server(idle)
    with running.connect(TIMEOUT) as sock:  # new connections: served, one request each
        status, fields, body = exchange(sock, req("GET", "/work"))
        assert (status, body, fields["connection"]) == (200, b"Hello world!\n", "close")
        assert closed_by_server(sock)
    running.call(running.server.undrain)
    with running.connect(TIMEOUT) as sock:
        status, fields, body = exchange(sock, req("GET", "/healthz"))
        assert (status, body) == (200, b"ok\n") and "connection" not in fields
        assert exchange(sock, req("GET", "/again"))[0] == 200  # keep-alive is back
    assert calls == ["/work", "/again"]


def test_http2_health_and_drain(serve):
    running = serve(hello, health_path="/healthz")
    with httpx.Client(base_url=running.url, http1=False, http2=True, timeout=TIMEOUT) as client:
        first = client.get("/healthz")
        assert (first.http_version, first.status_code, first.content) == ("HTTP/2", 200, b"ok\n")
        assert first.headers["cache-control"] == "no-store"
        assert client.head("/healthz").status_code == 200
        assert client.post("/healthz", content=b"x").status_code == 405
        running.call(running.server.drain)
        draining = client.get("/healthz")
        assert (draining.status_code, draining.content) == (503, b"draining\n")
        work = client.get("/")
        assert (work.http_version, work.status_code) == ("HTTP/2", 200)
    assert requests_of(running) == 1


def test_a_closing_server_answers_503(serve):
    running = serve(hello, health_path="/healthz")
    sock = running.connect(TIMEOUT)
    request = req("GET", "/healthz")
    with sock:
        # a request begun before the close: a closing server still serves it, whether its
        # first bytes were read before the close (a request arriving) or after (they are
        # already in the socket when the 1 s grace starts: the next poll finds them)
        wait_until(lambda: running.call(lambda: running.server.connections) == 1)
        sock.sendall(request[:10])
        running.call(running.server.close)
        status, fields, body = exchange(sock, request[10:])
    assert (status, body, fields["connection"]) == (503, b"draining\n", "close")


@pytest.mark.parametrize(
    ("value", "error"),
    [("healthz", ValueError), ("/a b", ValueError), ("/a?b", ValueError), ("/é", ValueError),
     (b"/healthz", TypeError), (5, TypeError)],
)  # fmt: skip
def test_health_path_is_checked(value, error):
    with pytest.raises(error, match="health_path"):
        prefork.server.new(onstream=hello, health_path=value)
