"""The PROXY protocol on a real server (``proxy_protocol=True``): the header is read before TLS
and HTTP, and the client it names is the connection's peer for every request it carries
(HTTP/1 keep-alive and pipelining, HTTP/2 by prior knowledge, h2c and ALPN, TLS behind the
header), for the stream API, ASGI's ``client``, WSGI's ``REMOTE_ADDR``. LOCAL keeps the socket's
address; bad, truncated, oversized and slow headers and untrusted peers are closed and logged
at debug, and the server serves on. Clients are raw sockets (the header is ours to write),
h2 and the standard library's TLS."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from typing import Any

import h2.config
import h2.connection
import h2.events as ev
import pytest

import prefork.asgi
import prefork.server
import prefork.wsgi
from prefork.headers import Headers
from prefork.protocol import proxy
from tests.conftest import Running
from tests.helpers import read_response, wait_until
from tests.proxy_headers import local_v2, ssl_value, v1, v2
from tests.test_http2 import Raw, h2_context
from tests.test_tls import client_context

TIMEOUT = 10.0
CLIENT4 = ("203.0.113.7", 40001)
FRONT4 = ("198.51.100.1", 443)
CLIENT6 = ("2001:db8::7", 40002)
FRONT6 = ("2001:db8::1", 8443)


async def whoami(server: Any, stream: Any) -> None:
    """Answer with what the server knows of the two ends, as JSON."""
    await stream.get_headers()
    await stream.get_body_as_string()
    conn = stream.connection
    header = conn.proxy
    seen = {
        "peer": list(stream.peername()),
        "local": list(stream.localname()),
        "socket_peer": list(conn.socket_peername()),
        "version": stream.peer_version,
        "tls": stream.checktls() is not None,
        "proxy": None if header is None else [header.version, header.command, header.family],
        "authority": header and header.authority,
        "alpn": header and header.alpn and header.alpn.decode(),
        "cn": header and header.ssl and header.ssl.cn,
    }
    body = json.dumps(seen).encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-type", "application/json")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)


def requests(count: int, *, close: bool = True) -> bytes:
    """``count`` pipelined GETs, the last with ``Connection: close`` if ``close``."""
    out = []
    for i in range(count):
        last = "Connection: close\r\n" if close and i == count - 1 else ""
        out.append(f"GET /{i} HTTP/1.1\r\nHost: x\r\n{last}\r\n")
    return "".join(out).encode()


def bodies(data: bytes) -> list[dict[str, Any]]:
    """The JSON bodies of the content-length framed responses in ``data``."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        out.append(json.loads(rest[:length]))
        data = rest[length:]
    return out


def exchange(running: Running, header: bytes, payload: bytes, *, tls: bool = False) -> bytes:
    """Send ``header`` then ``payload`` (over TLS behind the header if ``tls``); read to EOF."""
    sock = running.connect(TIMEOUT)
    with sock:
        sock.sendall(header)
        if tls:
            with client_context(["http/1.1"]).wrap_socket(sock, server_hostname="x") as tsock:
                tsock.sendall(payload)
                return read_response(tsock)
        sock.sendall(payload)
        return read_response(sock)


def closed_without_a_word(running: Running, data: bytes) -> None:
    """``data`` gets no answer: the server closes (or resets) the connection."""
    with running.connect(TIMEOUT) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return  # refused before it could send it all (an untrusted peer is, at once)
        assert_closed(sock)


def assert_closed(sock: socket.socket) -> None:
    """The server closes (EOF) or resets the connection, having sent nothing."""
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(65536) == b""


def debug_lines(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "prefork.server" and r.levelno == logging.DEBUG and words in r.getMessage()
    ]


@pytest.fixture
def debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="prefork.server")
    return caplog


# -- the client's address, for every request -------------------------------------------------


@pytest.mark.parametrize(
    "make, client, front",
    [(v1, CLIENT4, FRONT4), (v1, CLIENT6, FRONT6), (v2, CLIENT4, FRONT4), (v2, CLIENT6, FRONT6)],
    ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6"],
)
def test_keep_alive_and_pipelining_see_the_client(
    serve: Any, make: Any, client: tuple[str, int], front: tuple[str, int]
) -> None:
    running = serve(whoami, proxy_protocol=True)
    family = socket.AF_INET6 if ":" in client[0] else socket.AF_INET
    # the header and the first request in one segment, then two more pipelined
    data = exchange(running, make(client, front) + requests(1, close=False), requests(2))
    seen = bodies(data)
    assert len(seen) == 3
    for one in seen:
        assert one["peer"] == [family, *client]
        assert one["local"] == [family, *front]
        assert one["socket_peer"][1] == "127.0.0.1"
        assert one["proxy"] == [
            1 if make is v1 else 2,
            "PROXY",
            "INET6" if family == socket.AF_INET6 else "INET",
        ]


def test_a_header_in_pieces(serve: Any) -> None:
    running = serve(whoami, proxy_protocol=True)
    header = v2(CLIENT4, FRONT4, tlvs=[(proxy.NOOP, b"\0" * 300)], crc=True)
    with running.connect(TIMEOUT) as sock:
        for at in range(0, len(header), 7):
            sock.sendall(header[at : at + 7])
        sock.sendall(requests(1))
        assert bodies(read_response(sock))[0]["peer"] == [socket.AF_INET, *CLIENT4]


def test_http2_prior_knowledge_streams_see_the_client(serve: Any) -> None:
    running = serve(whoami, proxy_protocol=True)
    sock = running.connect(TIMEOUT)
    with sock:
        sock.sendall(v2(CLIENT6, FRONT6))
        raw = Raw(running, sock=sock)
        for sid in (raw.get("/a"), raw.get("/b")):
            _, body = raw.response(sid)
            seen = json.loads(body)
            assert seen["peer"] == [socket.AF_INET6, *CLIENT6] and seen["version"] == 2


def test_h2c_upgrade_keeps_the_client(serve: Any) -> None:
    running = serve(whoami, proxy_protocol=True)
    upgrade = (
        b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    with running.connect(TIMEOUT) as sock:
        sock.sendall(v1(CLIENT4, FRONT4) + upgrade)
        assert read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 101")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_upgrade_connection()
        conn.send_headers(
            3,
            [(":method", "GET"), (":path", "/two"), (":scheme", "http"), (":authority", "x")],
            end_stream=True,
        )
        sock.sendall(conn.data_to_send())
        answers: dict[int, bytes] = {1: b"", 3: b""}
        ended: set[int] = set()
        while ended != {1, 3}:
            data = sock.recv(65536)
            assert data, "closed before both responses"
            for event in conn.receive_data(data):
                if isinstance(event, ev.DataReceived):
                    answers[event.stream_id] += event.data
                elif isinstance(event, ev.StreamEnded):
                    ended.add(event.stream_id)
            sock.sendall(conn.data_to_send())
        for sid in (1, 3):
            assert json.loads(answers[sid])["peer"] == [socket.AF_INET, *CLIENT4]


def read_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while end not in data:
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


@pytest.mark.parametrize("tls", [True, None], ids=["tls-on", "tls-sniffed"])
def test_tls_behind_the_header(serve: Any, tls: bool | None) -> None:
    # a balancer in TCP mode passes TLS through: the header comes before the ClientHello
    running = serve(whoami, proxy_protocol=True, tls=tls, ctx=h2_context())
    seen = bodies(exchange(running, v1(CLIENT4, FRONT4), requests(2), tls=True))
    assert [s["peer"] for s in seen] == [[socket.AF_INET, *CLIENT4]] * 2
    assert all(s["tls"] for s in seen)


def test_plaintext_sniffed_behind_the_header(serve: Any) -> None:
    running = serve(whoami, proxy_protocol=True, tls=None, ctx=h2_context())
    seen = bodies(exchange(running, v2(CLIENT4, FRONT4), requests(2)))
    assert [(s["peer"], s["tls"]) for s in seen] == [([socket.AF_INET, *CLIENT4], False)] * 2


def test_http2_over_tls_behind_the_header(serve: Any) -> None:
    running = serve(whoami, proxy_protocol=True, tls=True, ctx=h2_context())
    sock = running.connect(TIMEOUT)
    sock.sendall(v2(CLIENT6, FRONT6, tlvs=[(proxy.AUTHORITY, b"shop.example")]))
    with client_context(["h2"]).wrap_socket(sock, server_hostname="x") as tsock:
        assert tsock.selected_alpn_protocol() == "h2"
        raw = Raw(running, sock=tsock)
        _, body = raw.response(raw.get())
    seen = json.loads(body)
    assert seen["peer"] == [socket.AF_INET6, *CLIENT6]
    assert (seen["version"], seen["tls"], seen["authority"]) == (2, True, "shop.example")


def test_tlvs_are_reachable_on_the_connection(serve: Any) -> None:
    running = serve(whoami, proxy_protocol=True)
    tlvs = [
        (proxy.ALPN, b"h2"),
        (proxy.AUTHORITY, b"api.example"),
        (proxy.SSL, ssl_value(subs=[(proxy.SSL_CN, b"client.example")])),
    ]
    seen = bodies(exchange(running, v2(CLIENT4, FRONT4, tlvs=tlvs, crc=True), requests(1)))[0]
    assert (seen["alpn"], seen["authority"], seen["cn"]) == ("h2", "api.example", "client.example")
    assert seen["tls"] is False  # the balancer terminated TLS: not this connection's


# -- the health check and the unknown ---------------------------------------------------------


@pytest.mark.parametrize(
    "header", [local_v2(), b"PROXY UNKNOWN\r\n", v2()], ids=["local", "v1-unknown", "v2-unspec"]
)
def test_no_address_keeps_the_sockets(serve: Any, header: bytes) -> None:
    running = serve(whoami, proxy_protocol=True)
    seen = bodies(exchange(running, header, requests(1)))[0]
    assert seen["peer"] == seen["socket_peer"] and seen["peer"][1] == "127.0.0.1"
    assert seen["local"] == [socket.AF_INET, "127.0.0.1", running.port]
    assert seen["proxy"] == (None if header == local_v2() else [seen["proxy"][0], "PROXY", None])


# -- what is refused -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, words",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "no PROXY protocol header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "not printable"),
        (b"PROXY UNKNOWN " + b"x" * 200, "no CRLF in the first 107 bytes"),
        (v2(CLIENT4, FRONT4, crc=True)[:-1] + b"\x00", "CRC32C mismatch"),
        (b"\r\n\r\n\x00\r\nQUIT\n\x31", "version 3"),
    ],
    ids=["http", "bare-lf", "oversized", "bad-crc", "v2-version"],
)
def test_bad_headers_are_closed_and_logged(serve: Any, debug: Any, data: bytes, words: str) -> None:
    running = serve(whoami, proxy_protocol=True)
    closed_without_a_word(running, data)
    wait_until(lambda: debug_lines(debug, words), TIMEOUT, f"a debug line with {words!r}")
    assert bodies(exchange(running, v1(CLIENT4, FRONT4), requests(1)))[0]["peer"][1] == CLIENT4[0]


def test_truncated_header_is_closed_and_logged(serve: Any, debug: Any) -> None:
    running = serve(whoami, proxy_protocol=True)
    with running.connect(TIMEOUT) as sock:
        sock.sendall(v2(CLIENT4, FRONT4)[:20])
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    wait_until(lambda: debug_lines(debug, "closed before a complete PROXY"), TIMEOUT, "the log")


def test_slow_header_is_closed_at_the_set_up_deadline(serve: Any, debug: Any) -> None:
    running = serve(whoami, proxy_protocol=True, connection_setup_timeout=0.3)
    with running.connect(TIMEOUT) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.7 ")  # and then nothing more
        assert_closed(sock)
    wait_until(lambda: debug_lines(debug, "within connection_setup_timeout"), TIMEOUT, "the log")


def test_untrusted_peer_is_refused(serve: Any, debug: Any) -> None:
    running = serve(whoami, proxy_protocol=True, forwarded_allow_ips="10.0.0.0/8")
    closed_without_a_word(running, v1(CLIENT4, FRONT4) + requests(1))
    wait_until(lambda: debug_lines(debug, "not in forwarded_allow_ips"), TIMEOUT, "the log")


def test_a_server_without_the_option_never_guesses(serve: Any) -> None:
    # spec section 5: a header where none is configured is the client's bytes (a bad request)
    running = serve(whoami)
    data = exchange(running, v1(CLIENT4, FRONT4), requests(1))
    assert data.startswith(b"HTTP/1.1 400")


# -- Unix sockets, add_socket, the adapters --------------------------------------------------


def test_unix_listener_trusts_unix_peers(serve: Any, tmp_path: Any) -> None:
    running = serve(whoami, path=str(tmp_path / "s"), proxy_protocol=True)
    seen = bodies(exchange(running, v1(CLIENT4, FRONT4), requests(1)))[0]
    assert seen["peer"] == [socket.AF_INET, *CLIENT4]
    assert seen["socket_peer"][0] == socket.AF_UNIX
    refusing = serve(
        whoami, path=str(tmp_path / "t"), proxy_protocol=True, forwarded_allow_ips="127.0.0.1"
    )
    closed_without_a_word(refusing, v1(CLIENT4, FRONT4) + requests(1))


def test_add_socket_says_per_socket(serve: Any) -> None:
    server = prefork.server.new(onstream=whoami, tls=False, proxy_protocol=True)
    with_header, their_end = socket.socketpair()
    without, other_end = socket.socketpair()
    try:
        server.add_socket(with_header)  # the option: a header comes first
        server.add_socket(without, proxy_protocol=False)
        their_end.sendall(v2("/run/client", "/run/app") + requests(1))
        other_end.sendall(requests(1))
        their_end.settimeout(TIMEOUT)
        other_end.settimeout(TIMEOUT)
        server.loop(TIMEOUT)  # until both connections are done (each asked to close)
        assert bodies(read_response(their_end))[0]["peer"] == [socket.AF_UNIX, "/run/client"]
        assert bodies(read_response(other_end))[0]["proxy"] is None
        with socket.socket() as odd, pytest.raises(TypeError):
            server.add_socket(odd, proxy_protocol="yes")  # type: ignore[arg-type]
    finally:
        server.close()
        for sock in (their_end, other_end):
            sock.close()


def test_asgi_client_and_wsgi_remote_addr(serve: Any) -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    running = serve(prefork.asgi.onstream(app), proxy_protocol=True)
    exchange(running, v1(CLIENT4, FRONT4), requests(2))
    assert [s["client"] for s in scopes] == [CLIENT4] * 2
    assert scopes[0]["server"] == FRONT4

    environs: list[dict[str, Any]] = []

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environs.append({k: environ[k] for k in ("REMOTE_ADDR", "REMOTE_PORT")})
        start_response("204 No Content", [])
        return []

    running = serve(prefork.wsgi.onstream(wsgi_app), proxy_protocol=True)
    exchange(running, v2(CLIENT6, FRONT6), requests(2))
    assert environs == [{"REMOTE_ADDR": CLIENT6[0], "REMOTE_PORT": str(CLIENT6[1])}] * 2
