"""ASGI HTTP on real servers: ``prefork.server.listen(onstream=prefork.asgi.onstream(app))``.

Plain ASGI applications written here report what they see into a ``queue.Queue`` (read with a
timeout) and wait on ``asyncio.Event`` gates that the test opens on the server's loop
(``running.call(gate.set)``): nothing sleeps to synchronise. Clients: httpx (HTTP/1.1, HTTP/2
by prior knowledge and over TLS), raw sockets (HTTP/1.0, exact bytes, abrupt closes) and h2's
raw client (tests.test_http2.Raw) for resets and trailers.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.events as ev
import httpx
import pytest
from h2.errors import ErrorCodes
from websockets.asyncio.client import connect

import prefork.asgi
from tests.conftest import Running, run_async
from tests.helpers import pattern, read_response, wait_until
from tests.master_helpers import clean_env
from tests.test_http2 import Raw, h2_context
from tests.test_tls import client_context, recorder
from tests.tls_helpers import each_engine

TIMEOUT = 10.0
App = Callable[..., Any]


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def served(serve) -> Callable[..., tuple[Running, list[Any]]]:
    """``served(app, asgi={...}, **server_options)``: (the running server, what onerror got)."""

    def start(app: App, asgi: dict[str, Any] | None = None, **options: Any) -> Any:
        errors: list[Any] = []
        handler = prefork.asgi.onstream(app, **(asgi or {}))
        return serve(handler, onerror=recorder(errors), **options), errors

    return start


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += message["body"]
        if not message["more_body"]:
            return body


async def respond(send: Any, body: bytes, status: int = 200, **fields: str) -> None:
    headers = [(k.replace("_", "-").encode(), v.encode()) for k, v in fields.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def scope_app(seen: queue.Queue) -> App:
    """Reports each http scope, then answers with the request body."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.put(scope)
        await respond(send, await read_body(receive), content_type="text/plain")

    return app


def raw_request(running: Running, request: bytes, linger: bool = False) -> socket.socket:
    sock = running.connect(TIMEOUT)
    if linger:  # close() sends a reset: the server sees the connection lost at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(request)
    return sock


def read_until(sock: socket.socket, end: bytes) -> bytes:
    """Read until what arrived ends with ``end`` (bounded by the socket's timeout)."""
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


# -- the scope ---------------------------------------------------------------------------------


def test_http11_scope(served) -> None:
    seen: queue.Queue = queue.Queue()
    running, _ = served(scope_app(seen), asgi={"root_path": "/mnt/", "state": {"n": 1}})
    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.post(
            f"{running.url}/a%20b/%C3%A9t%C3%A9?x=1&y=%20",
            content=b"body",
            headers={"X-Foo": "Bar"},
        )
    assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"body", "4")
    scope = seen.get(timeout=TIMEOUT)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (scope["http_version"], scope["method"], scope["scheme"]) == ("1.1", "POST", "http")
    assert scope["root_path"] == "/mnt"
    assert scope["path"] == "/mnt/a b/été"  # with root_path, as ASGI and uvicorn >= 0.26
    assert scope["raw_path"] == b"/mnt/a%20b/%C3%A9t%C3%A9"
    assert scope["query_string"] == b"x=1&y=%20"
    headers = scope["headers"]
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in headers)
    assert (b"x-foo", b"Bar") in headers and (b"content-length", b"4") in headers
    assert dict(headers)[b"host"] == f"127.0.0.1:{running.port}".encode()
    assert not any(n.startswith(b":") for n, _ in headers)
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert tuple(scope["server"]) == ("127.0.0.1", running.port)
    assert scope["state"] == {"n": 1}
    assert scope["extensions"] == {"http.response.trailers": {}, "http.response.pathsend": {}}


def test_http10_scope_without_host(served) -> None:
    seen: queue.Queue = queue.Queue()
    running, _ = served(scope_app(seen))
    with raw_request(running, b"GET /ten HTTP/1.0\r\n\r\n") as sock:
        data = read_response(sock)
    assert data.startswith(b"HTTP/1.1 200 ") and b"\r\ncontent-length: 0\r\n" in data
    scope = seen.get(timeout=TIMEOUT)
    assert (scope["http_version"], scope["path"], scope["headers"]) == ("1.0", "/ten", [])


def test_http2_scope_has_host_from_authority(served) -> None:
    seen: queue.Queue = queue.Queue()
    running, _ = served(scope_app(seen))
    with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:
        r = client.post(f"{running.url}/two?q", content=b"x" * 100_000)
    assert (r.http_version, r.status_code, len(r.content)) == ("HTTP/2", 200, 100_000)
    scope = seen.get(timeout=TIMEOUT)
    assert (scope["http_version"], scope["scheme"], scope["path"]) == ("2", "http", "/two")
    assert scope["query_string"] == b"q"
    assert scope["headers"][0] == (b"host", f"127.0.0.1:{running.port}".encode())
    assert not any(n.startswith(b":") for n, _ in scope["headers"])


@each_engine
@pytest.mark.parametrize("http2", [False, True])
def test_tls_scope_is_https(served, tls_engine: str, http2: bool) -> None:
    seen: queue.Queue = queue.Queue()
    options = {"ctx": h2_context(tls_engine)} if http2 else {}
    running, _ = served(scope_app(seen), tls=True, **options)
    url = f"https://127.0.0.1:{running.port}/s"
    with httpx.Client(verify=client_context(), http2=http2, timeout=TIMEOUT) as client:
        r = client.get(url)
    assert r.status_code == 200
    scope = seen.get(timeout=TIMEOUT)
    assert scope["scheme"] == "https"
    assert scope["http_version"] == ("2" if http2 else "1.1")


def test_unix_socket_scope(served, tmp_path) -> None:
    seen: queue.Queue = queue.Queue()
    path = str(tmp_path / "asgi.sock")
    served(scope_app(seen), path=path, unlink=True)
    transport = httpx.HTTPTransport(uds=path)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        assert client.get("http://localhost/u").status_code == 200
    scope = seen.get(timeout=TIMEOUT)
    assert scope["client"] is None
    assert tuple(scope["server"]) == (path, None)


def test_state_is_a_shallow_copy_per_request(served) -> None:
    state: dict[str, Any] = {"n": 1, "shared": []}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["state"]["n"] += 1  # the request's own copy
        scope["state"]["shared"].append(scope["path"])  # the same object as the lifespan's
        await respond(send, str(scope["state"]["n"]).encode())

    running, _ = served(app, asgi={"state": state})
    with httpx.Client(base_url=running.url, timeout=TIMEOUT) as client:
        assert [client.get(p).text for p in ("/a", "/b")] == ["2", "2"]
    assert state == {"n": 1, "shared": ["/a", "/b"]}


# -- request bodies ----------------------------------------------------------------------------


def test_request_body_streams_in_pieces(served) -> None:
    seen: queue.Queue = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        messages = []
        while True:
            message = await receive()
            messages.append((len(message["body"]), message["more_body"]))
            if not message["more_body"]:
                break
        seen.put(messages)
        await respond(send, b"ok")

    running, _ = served(app)
    body = pattern(3 << 20)

    def pieces() -> Any:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.post(running.url, content=pieces()).text == "ok"  # chunked
    messages = seen.get(timeout=TIMEOUT)
    assert len(messages) > 1 and sum(n for n, _ in messages) == len(body)
    assert [more for _, more in messages] == [True] * (len(messages) - 1) + [False]


def test_an_app_that_does_not_read_holds_the_upload_back(served) -> None:
    """Back-pressure: a 50 MB upload the app does not receive stalls the client after the
    stream's buffer and the kernel's; nothing close to 50 MB waits in the server."""
    size = 50 << 20
    seen: queue.Queue = queue.Queue()
    gate = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        first = await receive()
        seen.put("first")
        await gate.wait()
        total = len(first["body"])
        while (message := await receive())["more_body"]:
            total += len(message["body"])
        total += len(message["body"])
        await respond(send, str(total).encode())

    running, _ = served(app)
    with raw_request(
        running, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
    ) as sock:
        sock.setblocking(False)
        block = b"\0" * 65536
        sent = 0
        while sent < size:  # send until the server stops taking bytes for a whole second
            try:
                sent += sock.send(block[: size - sent])
            except BlockingIOError:
                if not select.select([], [sock], [], 1.0)[1]:
                    break
        seen.get(timeout=TIMEOUT)
        assert sent < size // 2, f"the server took {sent} bytes the app did not read"
        running.call(gate.set)
        sock.settimeout(TIMEOUT)
        sock.sendall(b"\0" * (size - sent))
        data = read_until(sock, b"\r\n\r\n%d" % size)
    assert data.startswith(b"HTTP/1.1 200 ")


def test_disconnect_while_waiting_in_receive_http1(served) -> None:
    seen: queue.Queue = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        seen.put("waiting")
        seen.put((await receive())["type"])

    running, _ = served(app)
    sock = raw_request(running, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert seen.get(timeout=TIMEOUT) == "waiting"
    sock.close()
    closed = time.monotonic()
    assert seen.get(timeout=2) == "http.disconnect"
    assert time.monotonic() - closed < 2


def test_disconnect_while_waiting_in_receive_http2(served) -> None:
    seen: queue.Queue = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        if scope["path"] == "/other":
            await respond(send, b"other")
            return
        seen.put("waiting")
        seen.put((await receive())["type"])
        try:
            await respond(send, b"late")
        except OSError as exc:
            seen.put(type(exc))

    running, _ = served(app)
    client = Raw(running)
    try:
        sid = client.get("/wait")
        assert seen.get(timeout=TIMEOUT) == "waiting"
        client.conn.reset_stream(sid, ErrorCodes.CANCEL)
        client.flush()
        assert seen.get(timeout=2) == "http.disconnect"
        assert seen.get(timeout=TIMEOUT) is prefork.asgi.ClientDisconnected
        other = client.get("/other")  # the connection lives on
        assert client.response(other)[1] == b"other"
    finally:
        client.close()


def test_client_leaving_mid_body_is_a_disconnect(served) -> None:
    seen: queue.Queue = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        messages = [await receive()]
        seen.put("reading")
        messages.append(await receive())
        seen.put([m["type"] for m in messages])
        try:
            await respond(send, b"too late")
        except OSError as exc:
            seen.put(exc)

    running, errors = served(app)
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"
    sock = raw_request(running, request, linger=True)
    assert seen.get(timeout=TIMEOUT) == "reading"
    sock.close()
    assert seen.get(timeout=TIMEOUT) == ["http.request", "http.disconnect"]
    exc = seen.get(timeout=TIMEOUT)
    assert isinstance(exc, prefork.asgi.ClientDisconnected) and isinstance(exc, OSError)
    assert errors == []


def test_receive_after_the_response_says_disconnect(served) -> None:
    seen: queue.Queue = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(receive)
        await respond(send, b"done")
        seen.put(await receive())
        try:
            await send({"type": "http.response.body", "body": b"more"})
        except RuntimeError as exc:
            seen.put(str(exc))

    running, _ = served(app)
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.get(running.url).text == "done"
    assert seen.get(timeout=TIMEOUT) == {"type": "http.disconnect"}
    assert "after the response completed" in seen.get(timeout=TIMEOUT)


def test_a_body_over_max_body_size_is_answered_413(served) -> None:
    seen: queue.Queue = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (message := await receive())["type"] == "http.request":
            pass
        seen.put(message["type"])
        try:
            await respond(send, b"never")
        except OSError as exc:
            seen.put(exc)

    running, errors = served(app, max_body_size=1000)
    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.post(running.url, content=(b"x" * 500 for _ in range(10)))
    assert r.status_code == 413
    assert seen.get(timeout=TIMEOUT) == "http.disconnect"
    assert isinstance(seen.get(timeout=TIMEOUT), prefork.asgi.ClientDisconnected)
    assert errors == []


# -- responses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("http2", [False, True])
def test_a_streamed_response_leaves_piece_by_piece(served, http2: bool) -> None:
    gate = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await gate.wait()
        await send({"type": "http.response.body", "body": b"second", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    running, _ = served(app)
    with (
        httpx.Client(http1=not http2, http2=http2, timeout=TIMEOUT) as client,
        client.stream("GET", running.url) as r,
    ):
        assert "content-length" not in r.headers
        chunks = r.iter_raw()
        assert next(chunks) == b"first"  # before the app sends the second
        running.call(gate.set)
        assert b"".join(chunks) == b"second"


def test_trailers_http1(served) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200, "trailers": True, "headers": []}
        await send(start)
        await send({"type": "http.response.body", "body": b"data", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        trailer = {"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]}
        await send({**trailer, "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum2", b"2")]})

    running, _ = served(app)
    request = b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n"
    with raw_request(running, request) as sock:
        data = read_response(sock)
    assert b"transfer-encoding: chunked" in data
    assert data.endswith(b"\r\n\r\n4\r\ndata\r\n0\r\nx-sum: 1\r\nx-sum2: 2\r\n\r\n")


def test_trailers_http2(served) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]})

    running, _ = served(app)
    client = Raw(running)
    try:
        sid = client.get("/")
        headers, body = client.response(sid)
        trailers = [e for e in client.events if isinstance(e, ev.TrailersReceived)]
    finally:
        client.close()
    assert (headers[":status"], body) == ("200", b"data")
    assert dict(trailers[0].headers) == {"x-sum": "1"}


@pytest.mark.parametrize("http2", [False, True])
def test_pathsend_sends_the_file(served, tmp_path, http2: bool) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(pattern(3 << 20))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(path)})

    running, _ = served(app)
    with httpx.Client(http1=not http2, http2=http2, timeout=TIMEOUT) as client:
        r = client.get(running.url)
        head = client.head(running.url)
    assert r.content == path.read_bytes()
    assert r.headers["content-length"] == str(3 << 20)  # from the file's size
    assert (head.status_code, head.headers["content-length"], head.content) == (
        200,
        str(3 << 20),
        b"",
    )


def test_head_has_no_body_and_the_connection_goes_on(served) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await respond(send, b"twelve bytes", content_type="text/plain")

    running, _ = served(app)
    with running.connect(TIMEOUT) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_until(sock, b"twelve bytes")
    head, get = data.split(b"HTTP/1.1 200 OK")[1:]
    assert b"content-length: 12\r\n" in head and head.endswith(b"\r\n\r\n")
    assert get.endswith(b"\r\n\r\ntwelve bytes")


# -- errors ------------------------------------------------------------------------------------


def test_exception_before_start_is_a_500(served) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("boom")

    running, errors = served(app)
    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.get(running.url)
    assert r.status_code == 500
    assert [(op, type(e)) for op, e in wait_until(lambda: errors)] == [("onstream", ValueError)]


def test_exception_between_start_and_body_is_a_500(served) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("boom")

    running, errors = served(app)
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.get(running.url).status_code == 500
    assert len(wait_until(lambda: errors)) == 1


@pytest.mark.parametrize("http2", [False, True])
def test_exception_after_the_body_began_cuts_the_response_off(served, http2: bool) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    running, errors = served(app)
    with (
        httpx.Client(http1=not http2, http2=http2, timeout=TIMEOUT) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get(running.url)
    assert [type(e) for _, e in wait_until(lambda: errors)] == [ValueError]


def test_returning_without_a_response_is_a_logged_500(served, caplog) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        pass

    running, errors = served(app)
    with caplog.at_level(logging.ERROR, "prefork.asgi"), httpx.Client(timeout=TIMEOUT) as client:
        r = client.get(f"{running.url}/nothing")
    assert r.status_code == 500
    assert "returned without starting response: GET /nothing" in caplog.text
    assert errors == []


def test_returning_mid_body_cuts_off_and_logs(served, caplog) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})

    running, _ = served(app)
    with (
        caplog.at_level(logging.ERROR, "prefork.asgi"),
        httpx.Client(timeout=TIMEOUT) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.get(running.url)
    assert "returned without completing response" in caplog.text


def test_messages_out_of_order_raise_in_the_app(served) -> None:
    seen: queue.Queue = queue.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.body", "body": b"x"})
        except RuntimeError as exc:
            seen.put(str(exc))
        await respond(send, b"fine")

    running, _ = served(app)
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.get(running.url).text == "fine"
    assert "expected ASGI message 'http.response.start'" in seen.get(timeout=TIMEOUT)


# -- the example ---------------------------------------------------------------------------------


def test_the_example_app() -> None:
    """examples/asgi_app.py on a server of its own (lifespan, HTTP, WebSocket), stopped by INT."""
    example = Path(__file__).parent.parent / "examples" / "asgi_app.py"
    argv = [sys.executable, str(example), "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
    try:
        assert proc.stderr is not None
        assert select.select([proc.stderr], [], [], TIMEOUT)[0], "the example did not start"
        port = int(proc.stderr.readline().split()[-1])
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=TIMEOUT) as client:
            assert client.post("/echo", content=(b"ab" for _ in range(3))).text == "ababab"
            assert [client.get("/count").text for _ in range(2)] == [
                "1 requests so far\n",
                "2 requests so far\n",
            ]

        async def shout() -> Any:
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send("hi")
                return await ws.recv()

        assert run_async(shout()) == "HI"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(TIMEOUT)
        if proc.stderr is not None:
            proc.stderr.close()
    assert code == 0
