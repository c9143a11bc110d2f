"""ASGI WebSocket on real servers, over HTTP/1.1 (the ``websockets`` client, plain and TLS) and
HTTP/2 (RFC 8441, tests.test_websocket_h2's h2 + wsproto client).

One plain ASGI application routes on the path: ``/ws`` accepts (choosing ``chat`` when offered,
with an extra header) and echoes until told ``close``/``raise``/``return``; ``/deny`` closes
before accepting; ``/response`` denies with a response of its own; ``/silent`` returns without
an answer; ``/boom`` raises before accepting. It reports through a ``queue.Queue``.
"""

from __future__ import annotations

import logging
import queue
import socket
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus
from wsproto.events import BytesMessage, CloseConnection, TextMessage

import prefork.asgi
from tests import test_asgi
from tests.conftest import run_async
from tests.helpers import wait_until
from tests.test_asgi import respond
from tests.test_http2 import h2_context
from tests.test_tls import client_context
from tests.test_websocket_h2 import Client
from tests.tls_helpers import each_engine

TIMEOUT = 10.0
served = test_asgi.served  # the fixture


def ws_app(seen: queue.Queue) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await respond(send, b"plain")
            return
        seen.put(("scope", scope))
        assert await receive() == {"type": "websocket.connect"}
        path = scope["path"]
        if path == "/deny":
            await send({"type": "websocket.close"})
            seen.put(("after-deny", await receive()))
            return
        if path == "/response":
            fields = [(b"content-type", b"text/plain"), (b"x-why", b"token")]
            await send({"type": "websocket.http.response.start", "status": 401, "headers": fields})
            await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"entry"})
            return
        if path == "/silent":
            return
        if path == "/boom":
            raise ValueError("before accept")
        protocol = "chat" if "chat" in scope["subprotocols"] else None
        accept = {"type": "websocket.accept", "subprotocol": protocol}
        await send({**accept, "headers": [(b"x-extra", b"1")]})
        await echo(seen, receive, send)

    return app


async def echo(seen: queue.Queue, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            seen.put(("disconnect", message["code"], message.get("reason")))
            try:
                await send({"type": "websocket.send", "text": "late"})
            except OSError as exc:
                seen.put(("send-after", exc))
            return
        text = message.get("text")
        if text == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
            seen.put(("after-close", await receive()))
            return
        if text == "raise":
            raise ValueError("after accept")
        if text == "return":
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def url(running: Any, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{running.port}{path}"


def next_of(seen: queue.Queue, kind: str) -> Any:
    while True:
        item = seen.get(timeout=TIMEOUT)
        if item[0] == kind:
            return item


# -- HTTP/1.1 ------------------------------------------------------------------------------------


def test_scope_echo_and_client_close(served) -> None:
    seen: queue.Queue = queue.Queue()
    running, errors = served(ws_app(seen), asgi={"root_path": "/r"})

    async def client() -> Any:
        async with connect(url(running, "/ws?x=1"), subprotocols=["other", "chat"]) as c:
            await c.send("héllo")
            text = await c.recv()
            await c.send(b"\x00\xff" * 40_000)
            data = await c.recv()
            await c.close(4000, "gone")
            return c.subprotocol, c.response.headers, text, data

    protocol, headers, text, data = run_async(client())
    assert (protocol, headers["x-extra"], text, data) == (
        "chat",
        "1",
        "héllo",
        b"\x00\xff" * 40_000,
    )
    assert "permessage-deflate" in headers["sec-websocket-extensions"]
    scope = next_of(seen, "scope")[1]
    assert (scope["type"], scope["scheme"], scope["http_version"]) == ("websocket", "ws", "1.1")
    assert (scope["path"], scope["raw_path"], scope["root_path"]) == ("/r/ws", b"/r/ws", "/r")
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["other", "chat"]
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert b"sec-websocket-key" in dict(scope["headers"])
    assert tuple(scope["server"]) == ("127.0.0.1", running.port) and scope["client"][0]
    assert next_of(seen, "disconnect") == ("disconnect", 4000, "gone")
    exc = next_of(seen, "send-after")[1]
    assert isinstance(exc, prefork.asgi.ClientDisconnected) and isinstance(exc, OSError)
    assert errors == []


def test_app_closes_with_a_code(served) -> None:
    seen: queue.Queue = queue.Queue()
    running, _ = served(ws_app(seen))

    async def client() -> Any:
        async with connect(url(running)) as c:
            await c.send("close")
            with pytest.raises(ClientClosed):
                await c.recv()
            return c.close_code, c.close_reason

    assert run_async(client()) == (4001, "bye")
    message = next_of(seen, "after-close")[1]
    assert (message["type"], message["code"]) == ("websocket.disconnect", 4001)


def test_close_before_accept_is_403(served) -> None:
    seen: queue.Queue = queue.Queue()
    running, _ = served(ws_app(seen))

    async def client() -> None:
        async with connect(url(running, "/deny")):
            pass

    with pytest.raises(InvalidStatus) as info:
        run_async(client())
    assert info.value.response.status_code == 403
    assert next_of(seen, "after-deny")[1] == {
        "type": "websocket.disconnect",
        "code": 1006,
        "reason": "",
    }


def test_the_http_response_extension_denies_with_a_response(served) -> None:
    running, errors = served(ws_app(queue.Queue()))

    async def client() -> None:
        async with connect(url(running, "/response")):
            pass

    with pytest.raises(InvalidStatus) as info:
        run_async(client())
    response = info.value.response
    assert (response.status_code, response.headers["x-why"], response.body) == (
        401,
        "token",
        b"no entry",
    )
    assert errors == []


def test_returning_without_an_answer_is_a_logged_500(served, caplog) -> None:
    running, _ = served(ws_app(queue.Queue()))

    async def client() -> None:
        async with connect(url(running, "/silent")):
            pass

    with caplog.at_level(logging.ERROR, "prefork.asgi"), pytest.raises(InvalidStatus) as info:
        run_async(client())
    assert info.value.response.status_code == 500
    assert "without answering the WebSocket: GET /silent" in caplog.text


def test_raising_before_accept_is_a_500(served) -> None:
    running, errors = served(ws_app(queue.Queue()))

    async def client() -> None:
        async with connect(url(running, "/boom")):
            pass

    with pytest.raises(InvalidStatus) as info:
        run_async(client())
    assert info.value.response.status_code == 500
    assert [type(e) for _, e in wait_until(lambda: errors)] == [ValueError]


@pytest.mark.parametrize(("say", "code"), [("raise", 1011), ("return", 1000)])
def test_the_app_ending_closes_the_websocket(served, say: str, code: int) -> None:
    running, errors = served(ws_app(queue.Queue()))

    async def client() -> Any:
        async with connect(url(running)) as c:
            await c.send(say)
            with pytest.raises(ClientClosed):
                await c.recv()
            return c.close_code

    assert run_async(client()) == code
    if say == "raise":
        assert [type(e) for _, e in wait_until(lambda: errors)] == [ValueError]
    else:
        assert errors == []


def test_a_client_that_vanishes_is_a_1006_disconnect(served) -> None:
    seen: queue.Queue = queue.Queue()
    running, _ = served(ws_app(seen))

    async def client() -> None:
        c = await connect(url(running))
        await c.send("hi")
        assert await c.recv() == "hi"
        c.transport.abort()  # no Close frame

    run_async(client())
    assert next_of(seen, "disconnect")[1] == 1006
    assert isinstance(next_of(seen, "send-after")[1], prefork.asgi.ClientDisconnected)


def test_message_size_limit_and_no_compression(served) -> None:
    seen: queue.Queue = queue.Queue()
    options = {"ws_max_size": 1000, "ws_per_message_deflate": False}
    running, _ = served(ws_app(seen), asgi=options)

    async def client() -> Any:
        async with connect(url(running)) as c:
            assert "sec-websocket-extensions" not in c.response.headers
            await c.send(b"x" * 1000)
            assert await c.recv() == b"x" * 1000
            await c.send(b"x" * 1001)
            with pytest.raises(ClientClosed):
                await c.recv()
            return c.close_code

    assert run_async(client()) == 1009
    assert next_of(seen, "disconnect")[1] == 1009


def test_a_bad_handshake_never_reaches_the_app(served) -> None:
    seen: queue.Queue = queue.Queue()
    running, _ = served(ws_app(seen))
    request = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    with socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")
    assert seen.empty()


@each_engine
def test_wss_scope(served) -> None:
    seen: queue.Queue = queue.Queue()
    running, _ = served(ws_app(seen), tls=True)

    async def client() -> str:
        uri = f"wss://127.0.0.1:{running.port}/ws"
        async with connect(uri, ssl=client_context()) as c:
            await c.send("secure")
            return str(await c.recv())

    assert run_async(client()) == "secure"
    assert next_of(seen, "scope")[1]["scheme"] == "wss"


# -- HTTP/2 (RFC 8441) ---------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True])
def test_http2_scope_echo_and_close_codes(served, tls: bool) -> None:
    seen: queue.Queue = queue.Queue()
    options = {"tls": True, "ctx": h2_context()} if tls else {}
    running, errors = served(ws_app(seen), **options)
    sock = None
    if tls:
        raw = socket.create_connection(("127.0.0.1", running.port), timeout=TIMEOUT)
        sock = client_context(["h2"]).wrap_socket(raw)
    c = Client(running, sock=sock, scheme="https" if tls else "http")
    try:
        sid, head = c.open_ws("/ws?q", sec_websocket_protocol="chat")
        assert (head["sec-websocket-protocol"], head["x-extra"]) == ("chat", "1")
        scope = next_of(seen, "scope")[1]
        c.send(sid, TextMessage(data="two"))
        assert c.receive(sid) == TextMessage(data="two")
        c.send(sid, BytesMessage(data=b"\x01" * 30_000))
        got = b""
        while len(got) < 30_000:
            got += c.receive(sid).data
        c.send(sid, CloseConnection(code=4002, reason="h2 bye"))
        assert isinstance(c.receive(sid), CloseConnection)
        assert next_of(seen, "disconnect") == ("disconnect", 4002, "h2 bye")
        second, _ = c.open_ws()
        c.send(second, TextMessage(data="close"))
        event = c.receive(second)
        assert isinstance(event, CloseConnection) and (event.code, event.reason) == (4001, "bye")
    finally:
        c.close()
    assert (scope["http_version"], scope["scheme"]) == ("2", "wss" if tls else "ws")
    assert (scope["path"], scope["query_string"], scope["subprotocols"]) == ("/ws", b"q", ["chat"])
    assert errors == []


def test_http2_deny_respond_and_raise(served) -> None:
    running, errors = served(ws_app(queue.Queue()))
    c = Client(running)
    try:
        assert c.head(c.connect_ws("/deny"))[":status"] == "403"
        sid = c.connect_ws("/response")
        headers, body = c.response(sid)
        assert (headers[":status"], headers["x-why"], body) == ("401", "token", b"no entry")
        sid, _ = c.open_ws()
        c.send(sid, TextMessage(data="raise"))
        event = c.receive(sid)
        assert isinstance(event, CloseConnection) and event.code == 1011
    finally:
        c.close()
    assert [type(e) for _, e in wait_until(lambda: errors)] == [ValueError]
