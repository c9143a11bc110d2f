"""Forwarded headers on real servers: the stream API, ASGI (a plain app, WebSocket), WSGI
(a plain app and Flask), HTTP/1.1 and HTTP/2, IPv6 and Unix sockets, and a master with its
access log. The proxy is the test client on loopback, which the default trust list holds;
``forwarded_allow_ips`` without loopback makes it an untrusted peer. The parser's own tests
are in tests/test_forwarded.py.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

import prefork.asgi
from prefork import wsgi
from prefork.headers import Headers
from tests.conftest import Running, run_async
from tests.helpers import wait_until
from tests.master_helpers import APPS, clean_env

TIMEOUT = 10.0
CHAIN = {
    "x-forwarded-for": "6.6.6.6, 203.0.113.7",  # the client's own claim, then the proxy's entry
    "x-forwarded-proto": "https",
    "x-forwarded-host": "shop.example",
}


async def report(server: Any, stream: Any) -> None:
    """Answer with what the stream says of the request, as JSON."""
    headers = await stream.get_headers()
    fwd = stream.forwarded
    body = json.dumps(
        {
            "peer": list(stream.peername()),
            "socket_peer": list(stream.connection.peername()),
            "scheme": headers.get(":scheme"),
            "authority": headers.get(":authority"),
            "host": headers.get("host"),
            "received": None if fwd is None else [fwd.received_scheme, fwd.received_authority],
        }
    ).encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-type", "application/json")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)


def http(running: Running, h2: bool = False) -> httpx.Client:
    return httpx.Client(
        base_url=running.url, http1=not h2, http2=h2, timeout=TIMEOUT, trust_env=False
    )


def seen(running: Running, headers: dict[str, str], h2: bool = False) -> dict[str, Any]:
    with http(running, h2) as c:
        r = c.get("/", headers=headers)
    assert r.status_code == 200
    return r.json()


# -- the stream API --------------------------------------------------------------------------------


@pytest.mark.parametrize("h2", [False, True], ids=["h1", "h2"])
def test_a_trusted_proxy_names_the_client_scheme_and_host(serve, h2: bool) -> None:
    running = serve(report)
    got = seen(running, CHAIN, h2)
    assert got["peer"] == [socket.AF_INET, "203.0.113.7", 0]  # not the spoofed 6.6.6.6
    assert got["socket_peer"][:2] == [socket.AF_INET, "127.0.0.1"]
    assert (got["scheme"], got["authority"]) == ("https", "shop.example")
    assert got["host"] == (None if h2 else "shop.example")  # httpx sends no host on HTTP/2
    assert got["received"] == ["http", f"127.0.0.1:{running.port}"]


def test_each_request_of_a_connection_is_resolved_on_its_own(serve) -> None:
    running = serve(report)
    with http(running) as c:
        first = c.get("/", headers={"x-forwarded-for": "203.0.113.7"}).json()
        second = c.get("/").json()
        third = c.get("/", headers={"x-forwarded-for": "203.0.113.8"}).json()
    assert first["socket_peer"] == second["socket_peer"] == third["socket_peer"]  # one connection
    assert first["peer"][1:] == ["203.0.113.7", 0]
    assert second["peer"] == second["socket_peer"] and second["received"] is None
    assert third["peer"][1:] == ["203.0.113.8", 0]


@pytest.mark.parametrize(
    "options",
    [
        {"forwarded_allow_ips": "10.0.0.1"},  # loopback is not a trusted proxy
        {"forwarded_allow_ips": ""},  # nobody is
        {"forwarded_headers": "off"},
        {"forwarded_headers": "forwarded"},  # the other family
    ],
)
def test_an_untrusted_peer_or_another_family_changes_nothing(serve, options) -> None:
    running = serve(report, **options)
    got = seen(running, CHAIN)
    assert got["peer"] == got["socket_peer"] and got["peer"][1] == "127.0.0.1"
    assert (got["scheme"], got["authority"]) == ("http", f"127.0.0.1:{running.port}")
    assert got["received"] is None


def test_trusted_networks_are_stepped_over(serve) -> None:
    running = serve(report, forwarded_allow_ips="127.0.0.0/8, 203.0.113.0/24")
    got = seen(running, {"x-forwarded-for": "192.0.2.1, 6.6.6.6, 203.0.113.7, 203.0.113.9"})
    assert got["peer"][1:] == ["6.6.6.6", 0]


def test_rfc_7239_forwarded(serve) -> None:
    running = serve(report, forwarded_headers="forwarded")
    value = 'for=6.6.6.6;proto=http, for="[2001:db8::7]:4711";proto=https;host="shop.example:8443"'
    got = seen(running, {"forwarded": value, "x-forwarded-for": "192.0.2.1"})
    assert got["peer"] == [socket.AF_INET6, "2001:db8::7", 4711]
    assert (got["scheme"], got["authority"], got["host"]) == (
        "https",
        "shop.example:8443",
        "shop.example:8443",
    )


def test_an_obfuscated_client(serve) -> None:
    running = serve(report, forwarded_headers="forwarded")
    got = seen(running, {"forwarded": 'for="_hidden:_p"'})
    assert got["peer"] == [socket.AF_UNSPEC, "_hidden", 0]


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_peer_is_trusted_by_default(serve) -> None:
    running = serve(report, host="::1")
    got = seen(running, {"x-forwarded-for": "2001:db8::1, 2001:DB8::2"})
    assert got["socket_peer"][:2] == [socket.AF_INET6, "::1"]
    assert got["peer"] == [socket.AF_INET6, "2001:db8::2", 0]


def test_unix_socket_peer_is_trusted_by_default(serve, tmp_path: Path) -> None:
    running = serve(report, path=str(tmp_path / "s"))
    with running.connect(TIMEOUT) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n"
            b"Connection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    got = json.loads(data.partition(b"\r\n\r\n")[2])
    assert got["socket_peer"][0] == socket.AF_UNIX
    assert got["peer"] == [socket.AF_INET, "203.0.113.7", 0]


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"x-forwarded-for": "6.6.6.6, not-an-address"}, "X-Forwarded-For has a bad node"),
        ({"x-forwarded-proto": "gopher"}, "X-Forwarded-Proto is not http"),
        ({"x-forwarded-host": "a b"}, "X-Forwarded-Host is not a host"),
        ({"x-forwarded-port": "70000"}, "X-Forwarded-Port is not a port"),
    ],
)
def test_bad_input_is_ignored_and_logged(serve, caplog, headers, why) -> None:
    running = serve(report)
    with caplog.at_level(logging.DEBUG, "prefork.server"):
        got = seen(running, headers)
    assert got["peer"] == got["socket_peer"] and got["received"] is None
    lines = [r.getMessage() for r in caplog.records if r.name == "prefork.server"]
    assert any("forwarded header from" in line and why in line for line in lines), lines


# -- ASGI and WSGI -----------------------------------------------------------------------------


def scope_app(scopes: queue.Queue) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scopes.put(scope)
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})
            return
        scopes.put(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


@pytest.mark.parametrize("h2", [False, True], ids=["h1", "h2"])
def test_asgi_scope(serve, h2: bool) -> None:
    scopes: queue.Queue = queue.Queue()
    running = serve(prefork.asgi.onstream(scope_app(scopes)))
    with http(running, h2) as c:
        assert c.get("/", headers={**CHAIN, "x-forwarded-port": "8443"}).status_code == 204
        assert c.get("/").status_code == 204  # the same connection, no proxy word
    scope = scopes.get(timeout=TIMEOUT)
    assert (scope["client"], scope["scheme"]) == (("203.0.113.7", 0), "https")
    assert tuple(scope["server"]) == ("shop.example", 8443)
    assert dict(scope["headers"])[b"host"] == b"shop.example:8443"
    plain = scopes.get(timeout=TIMEOUT)  # the per-connection cache is not fooled
    assert plain["client"][0] == "127.0.0.1" and plain["client"][1] != 0
    assert plain["scheme"] == "http" and tuple(plain["server"]) == ("127.0.0.1", running.port)


def test_asgi_websocket_scheme_is_wss(serve) -> None:
    scopes: queue.Queue = queue.Queue()
    running = serve(prefork.asgi.onstream(scope_app(scopes)))

    async def handshake() -> None:
        headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
        async with connect(f"ws://127.0.0.1:{running.port}/ws", additional_headers=headers):
            pass

    run_async(handshake())
    scope = scopes.get(timeout=TIMEOUT)
    assert (scope["type"], scope["scheme"], scope["client"]) == (
        "websocket",
        "wss",
        ("203.0.113.7", 0),
    )


def environ_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "SERVER_NAME", "SERVER_PORT", "HTTP_HOST")
    body = json.dumps({k: environ.get(k) for k in (*keys, "wsgi.url_scheme")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@pytest.mark.parametrize("h2", [False, True], ids=["h1", "h2"])
def test_wsgi_environ(serve, h2: bool) -> None:
    running = serve(wsgi.onstream(environ_app))
    with http(running, h2) as c:
        env = c.get("/", headers=CHAIN).json()
        plain = c.get("/").json()
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.7", "0")
    assert (env["wsgi.url_scheme"], env["HTTP_HOST"]) == ("https", "shop.example")
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "443")
    assert plain["REMOTE_ADDR"] == "127.0.0.1" and plain["REMOTE_PORT"] != "0"
    assert plain["wsgi.url_scheme"] == "http"


def test_flask_builds_urls_for_the_client(serve) -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask("forwarded")

    @app.get("/where")
    def where() -> Any:
        req = flask.request
        return {"remote": req.remote_addr, "url": req.url, "secure": req.is_secure}

    running = serve(wsgi.onstream(app))
    got = seen_path(running, "/where", CHAIN)
    assert got == {"remote": "203.0.113.7", "url": "https://shop.example/where", "secure": True}


def seen_path(running: Running, path: str, headers: dict[str, str]) -> Any:
    with http(running) as c:
        r = c.get(path, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


# -- under a master ----------------------------------------------------------------------------


def test_fastapi_and_the_access_log_under_a_master(start_master, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    master = start_master(
        None, "--access-log", str(access), f"{APPS / 'asgi_forwarded.py'}:app", workers=1
    )
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as c:
        got = c.get(f"http://127.0.0.1:{master.port}/where", headers=CHAIN).json()
    assert got == {"client": "203.0.113.7", "url": "https://shop.example/where"}
    wait_until(lambda: "/where" in access.read_text(), 5, "the access log line")
    line = next(line for line in access.read_text().splitlines() if "/where" in line)
    assert line.startswith("203.0.113.7 - - [")


def test_the_allow_list_from_the_environment_under_a_master(start_master, tmp_path) -> None:
    access = tmp_path / "access.log"
    env = clean_env(FORWARDED_ALLOW_IPS="10.0.0.0/8")  # loopback is no proxy of ours
    master = start_master(
        None, "--access-log", str(access), f"{APPS / 'asgi_forwarded.py'}:app", env=env
    )
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as c:
        got = c.get(f"http://127.0.0.1:{master.port}/where", headers=CHAIN).json()
    assert got == {"client": "127.0.0.1", "url": f"http://127.0.0.1:{master.port}/where"}
    wait_until(lambda: "/where" in access.read_text(), 5, "the access log line")
    assert all(line.startswith("127.0.0.1 ") for line in access.read_text().splitlines())


def test_command_line_flags_reach_the_workers(start_master) -> None:
    """``--forwarded-allow-ips`` beats ``$FORWARDED_ALLOW_IPS``; ``--forwarded-headers forwarded``
    reads RFC 7239 and no longer X-Forwarded-*."""
    master = start_master(
        None,
        "--forwarded-allow-ips",
        "127.0.0.1",
        "--forwarded-headers",
        "forwarded",
        f"{APPS / 'asgi_forwarded.py'}:app",
        env=clean_env(FORWARDED_ALLOW_IPS="10.0.0.0/8"),
    )
    headers = {**CHAIN, "forwarded": 'for=192.0.2.1;proto=https;host="shop.example:8443"'}
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as c:
        got = c.get(f"http://127.0.0.1:{master.port}/where", headers=headers).json()
    assert got == {"client": "192.0.2.1", "url": "https://shop.example:8443/where"}
