"""TLS on real sockets: Python's ssl client, curl, attacks, and the sans-I/O helpers.

Servers are ``serve(...)`` fixtures on 127.0.0.1 port 0 with ``tls=True`` or ``tls=None``
(sniffing), each on every TLS engine: the module's ``tls_engine`` fixture runs every server
test on pyOpenSSL, on the ``ssl`` module, and on the ``ssl`` module under a uvloop loop (see
tests/tls_helpers.py). Handlers report what they saw into lists the tests read after the
exchange. Every socket has a timeout; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from prefork.protocol import tls
from tests.conftest import Running, response_headers
from tests.helpers import curl, need_curl, pattern, read_response, wait_until
from tests.tls_helpers import (
    ENGINES,
    alpn_of,
    caller_context,
    configure,
    connection_class,
    library,
)

SETUP_TIMEOUT = 0.5  # connection_setup_timeout of the attack tests


@pytest.fixture(params=ENGINES)
def tls_engine(request: pytest.FixtureRequest) -> str:
    """Every server of this module, on each TLS engine."""
    return request.param


# -- helpers --------------------------------------------------------------------------------------


def client_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context that trusts anything (the server's certificate is self-signed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


@contextlib.contextmanager
def https(running: Running, alpn: list[str] | None = None) -> Iterator[http.client.HTTPSConnection]:
    conn = http.client.HTTPSConnection(
        running.host, running.port, context=client_context(alpn), timeout=10
    )
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def tls_socket(running: Running, ctx: ssl.SSLContext | None = None) -> Iterator[ssl.SSLSocket]:
    with (ctx or client_context()).wrap_socket(running.connect()) as sock:
        yield sock


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"") -> Any:
    conn.request(method, path, body=body or None)
    resp = conn.getresponse()
    data = resp.read()
    assert resp.status == 200, data
    return data


def make_echo(seen: list[Any]) -> Any:
    """A handler that answers JSON about the request; ``/?size=N`` appends N pattern bytes."""

    async def echo(server: Any, stream: Any) -> None:
        headers = await stream.get_headers()
        body = await stream.get_body_as_string()
        conn = stream.checktls()
        seen.append(conn)
        info = {
            "scheme": headers.get(":scheme"),
            "alpn": alpn_of(conn) if conn else None,
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        path = headers.get(":path")
        extra = pattern(int(path.partition("size=")[2])) if "size=" in path else b""
        payload = json.dumps(info).encode() + b"\n" + extra
        out = response_headers("200", content_length=str(len(payload)))
        await stream.write_headers(out, False)
        await stream.write_chunk(payload, True)

    return echo


def parse(data: bytes) -> tuple[dict[str, Any], bytes]:
    line, _, extra = data.partition(b"\n")
    return json.loads(line), extra


def recorder(errors: list[Any]) -> Any:
    def onerror(server: Any, context: Any, op: str, err: BaseException, errno: Any) -> None:
        errors.append((op, err))

    return onerror


def client_hello() -> bytes:
    """The first flight of a real TLS client (a ClientHello record), made in memory."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = client_context().wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        sslobj.do_handshake()
    return outgoing.read()


class MemoryClient:
    """A TLS client over a plain socket, records moved by hand, so a test can send raw bytes
    under or around TLS (split ClientHellos, forged records)."""

    def __init__(self, sock: socket.socket, alpn: list[str] | None = None) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_context(alpn).wrap_bio(self.incoming, self.outgoing)

    def hello(self) -> bytes:
        """The ClientHello, for the test to send as it likes."""
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        return self.outgoing.read()

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        assert data, "server closed the connection"
        self.incoming.write(data)

    def finish_handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self._receive()
        self.sock.sendall(self.outgoing.read())

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def receive_until(self, marker: bytes) -> bytes:
        got = b""
        while not got.endswith(marker):
            self._receive()
            with contextlib.suppress(ssl.SSLWantReadError):
                got += self.tls.read(65536)
        return got


def wait_closed(sock: socket.socket) -> bytes:
    """Read until the server closes (or resets); return what it sent."""
    try:
        return read_response(sock)
    except ConnectionResetError:
        return b""


def assert_serves_https(running: Running) -> None:
    """A normal HTTPS client still gets a 200 and the server reported nothing."""
    with https(running) as conn:
        request(conn, "GET", "/after")
    assert running.thread.is_alive()
    assert running.errors == []


def peer_certificate(sock: ssl.SSLSocket) -> x509.Certificate:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


# -- serving over TLS ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [True, None], ids=["tls", "sniff"])
def test_https_keep_alive_get_and_post_large_bodies(
    serve, tls_engine: str, mode: bool | None
) -> None:
    seen: list[Any] = []
    errors: list[Any] = []
    upload = pattern(3 * 1024 * 1024 + 7)
    running = serve(
        make_echo(seen), tls=mode, onerror=recorder(errors), max_buffered_body=2 * len(upload)
    )
    with https(running) as conn:
        info, _ = parse(request(conn, "GET", "/"))
        assert info == {
            "scheme": "https",
            "alpn": None,
            "length": 0,
            "sha256": hashlib.sha256(b"").hexdigest(),
        }
        info, _ = parse(request(conn, "POST", "/", upload))
        assert info["length"] == len(upload)
        assert info["sha256"] == hashlib.sha256(upload).hexdigest()
        size = 5 * 1024 * 1024 + 3
        _, extra = parse(request(conn, "GET", f"/?size={size}"))
        assert extra == pattern(size)
        sock = conn.sock
        for _ in range(3):
            request(conn, "GET", "/again")
        assert conn.sock is sock  # one connection throughout: keep-alive
    assert len(seen) == 6
    assert all(isinstance(c, connection_class(tls_engine)) for c in seen)  # checktls()
    assert len({id(c) for c in seen}) == 1
    assert errors == []


def test_plaintext_and_tls_on_one_sniffing_port(serve, tls_engine: str) -> None:
    seen: list[Any] = []
    running = serve(make_echo(seen), tls=None)
    plain = http.client.HTTPConnection(running.host, running.port, timeout=10)
    try:
        info, _ = parse(request(plain, "POST", "/", b"plain body"))
        assert info["scheme"] == "http" and info["length"] == 10
        info, _ = parse(request(plain, "GET", "/"))
    finally:
        plain.close()
    with https(running) as conn:
        info, _ = parse(request(conn, "POST", "/", b"secret"))
        assert info["scheme"] == "https" and info["length"] == 6
    assert seen[0] is None and seen[1] is None
    assert isinstance(seen[2], connection_class(tls_engine))


def test_sniff_decides_on_bytes_that_arrive_one_at_a_time(serve) -> None:
    running = serve(make_echo([]), tls=None)
    with running.connect() as sock:
        sock.sendall(b"G")  # plaintext is known from its first byte
        sock.sendall(b"ET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert wait_closed(sock).startswith(b"HTTP/1.1 200 ")
    with running.connect() as sock:
        client = MemoryClient(sock)
        hello = client.hello()
        sock.sendall(hello[:2])  # the sniff waits for six bytes, then hands over to TLS
        sock.sendall(hello[2:])
        client.finish_handshake()
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = client.receive_until(b"}\n")
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b'"scheme": "https"' in reply


def test_client_close_notify_is_answered_with_close_notify(serve) -> None:
    running = serve(make_echo([]), tls=True)
    with running.connect() as raw:
        sock = client_context().wrap_socket(raw)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        plain = sock.unwrap()  # sends close_notify, waits for the server's
        assert plain.recv(1) == b""  # then the TCP connection ends too
        plain.close()
    assert_serves_https(running)


def test_connection_close_with_unread_body_lingers_over_tls(serve) -> None:
    """Response, close_notify, FIN (write_eof) while the client is still sending its body."""

    async def early(server: Any, stream: Any) -> None:
        await stream.get_headers()
        await stream.write_headers(response_headers("200", content_length="5"), False)
        await stream.write_chunk(b"early", True)

    running = serve(early, tls=True)
    with tls_socket(running) as sock:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000000\r\n\r\n"
        sock.sendall(head + pattern(65536))
        reply = wait_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"\r\n\r\nearly")
    assert_serves_https(running)


# -- ALPN and contexts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "version", "chosen"),
    [
        (["http/1.1"], None, "http/1.1"),
        (["foo"], None, None),  # unknown only: served without ALPN
        # pyOpenSSL: the client's order wins; ssl: the server's (RFC 7301 section 3.2)
        (["foo", "http/1.0", "http/1.1"], None, {"pyopenssl": "http/1.0", "ssl": "http/1.1"}),
        (["http/1.1", "h2"], None, "h2"),  # h2 first on both, whatever the client's order
        (["h2", "http/1.1"], 1.1, "http/1.1"),  # pinned to 1.1: h2 is not chosen
        (["http/1.1", "http/1.0"], 1.0, "http/1.0"),
        (["http/1.0"], 1.1, None),
    ],
)
def test_alpn(serve, tls_engine: str, offered: list[str], version: float | None, chosen) -> None:
    if isinstance(chosen, dict):
        chosen = chosen[library(tls_engine)]
    seen: list[Any] = []
    running = serve(make_echo(seen), tls=True, version=version)
    with https(running, alpn=offered) as conn:
        conn.connect()
        assert conn.sock.selected_alpn_protocol() == chosen
        if chosen == "h2":
            return  # HTTP/2 from here on: tests/test_http2.py speaks it
        info, _ = parse(request(conn, "GET", "/"))
    assert info["alpn"] == chosen
    assert info["scheme"] == "https"


def test_default_context_certificate(serve) -> None:
    running = serve(make_echo([]), tls=True)
    with tls_socket(running) as sock:
        cert = peer_certificate(sock)
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=31)
    assert cert.issuer == cert.subject  # self-signed
    other = serve(make_echo([]), tls=True)
    with tls_socket(other) as sock:
        assert peer_certificate(sock).serial_number != cert.serial_number
    with tls_socket(running) as sock:  # one context per server, made once
        assert peer_certificate(sock).serial_number == cert.serial_number


def test_self_signed_names() -> None:
    cert, _ = tls.self_signed("example.test")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.test"]
    cert, _ = tls.self_signed("0.0.0.0")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("::1") in san.get_values_for_type(x509.IPAddress)


def test_caller_context_is_used_as_given(serve, tls_engine: str) -> None:
    ctx = caller_context(tls_engine, "caller.example")
    running = serve(make_echo([]), tls=True, ctx=ctx)
    with tls_socket(running, client_context(["http/1.1"])) as sock:
        cert = peer_certificate(sock)
        assert sock.selected_alpn_protocol() is None  # prefork did not add ALPN to it
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "caller.example"
    assert_serves_https(running)


def test_configure_gives_a_caller_context_the_defaults(serve, tls_engine: str) -> None:
    ctx = configure(tls_engine, caller_context(tls_engine, "caller.example"), (b"http/1.1",))
    running = serve(make_echo([]), tls=True, ctx=ctx)
    with https(running, alpn=["http/1.1"]) as conn:
        info, _ = parse(request(conn, "GET", "/"))
    assert info["alpn"] == "http/1.1"


def test_tls_1_1_client_is_refused(serve) -> None:
    ctx = client_context()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        probe = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
        with pytest.raises(ssl.SSLWantReadError):  # it can say hello: a usable TLS 1.1 client
            probe.do_handshake()
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(
            f"the local OpenSSL ({ssl.OPENSSL_VERSION}) cannot make a TLS 1.1 client: {exc}"
        )
    errors: list[Any] = []
    running = serve(make_echo([]), tls=True, onerror=recorder(errors))
    with running.connect() as raw, pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
        ctx.wrap_socket(raw)
    assert_serves_https(running)
    assert errors == []


@need_curl
@pytest.mark.parametrize("mode", [True, None], ids=["tls", "sniff"])
def test_curl_https_http11(serve, mode: bool | None) -> None:
    running = serve(make_echo([]), tls=mode)
    url = f"https://{running.host}:{running.port}"
    out = curl("-vk", "--http1.1", "--data-binary", "curl body", f"{url}/a", f"{url}/b", max_time=8)
    assert out.returncode == 0, out.stderr
    replies = out.stdout.split(b"\n{")
    assert len(replies) == 2 and out.stdout.count(b'"scheme": "https"') == 2, out.stdout
    info, _ = parse(out.stdout.partition(b"\n")[0])
    assert info["alpn"] == "http/1.1" and info["length"] == 9
    assert b"Re-using existing connection" in out.stderr  # keep-alive over TLS


# -- attacks: each closes only the attacker, then a normal client is served ------------------------


@pytest.mark.parametrize("mode", [True, None], ids=["tls", "sniff"])
def test_handshake_that_never_completes_is_closed(serve, mode: bool | None) -> None:
    errors: list[Any] = []
    running = serve(
        make_echo([]), tls=mode, connection_setup_timeout=SETUP_TIMEOUT, onerror=recorder(errors)
    )
    hello = client_hello()
    with running.connect(timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(hello[: len(hello) // 2])
        assert wait_closed(sock) == b""
        elapsed = time.monotonic() - started
    assert SETUP_TIMEOUT * 0.8 <= elapsed < SETUP_TIMEOUT + 3
    assert_serves_https(running)
    assert errors == []


def test_silent_client_on_sniffing_port_is_closed(serve) -> None:
    running = serve(make_echo([]), tls=None, connection_setup_timeout=SETUP_TIMEOUT)
    with running.connect(timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"\x16\x03")  # might be TLS; the rest never comes
        assert wait_closed(sock) == b""
        assert time.monotonic() - started < SETUP_TIMEOUT + 3
    assert_serves_https(running)


GARBAGE = {
    "hello-header-then-nonsense": b"\x16\x03\x01\x00\x10\x01" + b"\xff" * 15,
    "record-too-long": b"\x16\x03\x03\xff\xff\x01" + b"\x00" * 100,
    "server-hello-from-client": b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",
}


@pytest.mark.parametrize(
    ("mode", "garbage"),
    [(True, name) for name in GARBAGE] + [(None, name) for name in list(GARBAGE)[:2]],
)
def test_garbage_instead_of_client_hello_is_closed_at_once(
    serve, caplog, mode: bool | None, garbage: str
) -> None:
    errors: list[Any] = []
    running = serve(make_echo([]), tls=mode, onerror=recorder(errors))  # set-up timeout 10 s
    with caplog.at_level(logging.DEBUG, logger="prefork.server"):
        with running.connect(timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(GARBAGE[garbage])
            reply = wait_closed(sock)
            assert time.monotonic() - started < 5  # OpenSSL gave up: not the set-up deadline
        wait_until(lambda: "TLS failed (handshake)" in caplog.text, what="the debug line")
    assert reply == b"" or reply[0] == 0x15, reply  # at most a TLS alert record
    assert_serves_https(running)
    assert errors == []


def test_garbage_that_is_no_client_hello_on_sniffing_port_goes_to_http1(serve) -> None:
    # 0x16 but not a ClientHello: the HTTP/1 parser has it, and its deadline closes it.
    running = serve(make_echo([]), tls=None, intra_stream_timeout=SETUP_TIMEOUT)
    with running.connect(timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(GARBAGE["server-hello-from-client"])
        reply = wait_closed(sock)
        assert time.monotonic() - started < SETUP_TIMEOUT + 3
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400 "), reply
    assert_serves_https(running)


def test_tls_looking_first_byte_then_text_on_sniffing_port_gets_400(serve) -> None:
    running = serve(make_echo([]), tls=None)
    with running.connect() as sock:
        sock.sendall(b"\x16GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_closed(sock).startswith(b"HTTP/1.1 400 ")
    assert_serves_https(running)


def test_client_hello_on_plaintext_only_port_gets_400(serve) -> None:
    running = serve(make_echo([]), tls=False)
    with running.connect() as sock:
        sock.sendall(client_hello())
        assert wait_closed(sock).startswith(b"HTTP/1.1 400 ")


def test_bad_record_after_handshake_closes_only_that_connection(serve) -> None:
    errors: list[Any] = []
    running = serve(make_echo([]), tls=True, onerror=recorder(errors))
    with running.connect() as sock:
        client = MemoryClient(sock)
        sock.sendall(client.hello())
        client.finish_handshake()
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.receive_until(b"}\n").startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # a forged record
        reply = wait_closed(sock)
    if reply:  # TLS 1.3 encrypts alerts: the client can read it
        client.incoming.write(reply)
        with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC"):
            client.tls.read(65536)
    assert_serves_https(running)
    assert errors == []


def test_server_close_during_handshake_ends_the_loop(serve) -> None:
    running = serve(make_echo([]), tls=True)
    hello = client_hello()
    with running.connect() as sock:
        sock.sendall(hello[:10])
        # Counted while in the handshake (max_concurrent, close()):
        wait_until(lambda: running.call(lambda: len(running.server._host.connections)) == 1)
        running.stop()
        assert wait_closed(sock) == b""
    assert not running.thread.is_alive()


# -- the sans-I/O parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "verdict"),
    [
        (b"", None),
        (b"G", False),
        (b"GET / HTTP/1.1\r\n", False),
        (b"\x16", None),
        (b"\x16\x03\x01\x02", None),
        (b"\x16\x03\x01\x02\x00\x01", True),
        (b"\x16\x03\x03\x02\x00\x01", True),
        (b"\x16\x03\x00\x02\x00\x01", False),  # SSL 3.0 record
        (b"\x16\x03\x04", False),
        (b"\x16\x02", False),
        (b"\x16\x03\x01\x02\x00\x02", False),  # a ServerHello
        (b"\x80\x2e\x01", False),  # SSLv2-style hello: not served
    ],
)
def test_looks_like_tls(first: bytes, verdict: bool | None) -> None:
    assert tls.looks_like_tls(first) is verdict


def test_alpn_protocols_follow_version() -> None:
    assert tls.alpn_protocols(None) == (b"http/1.1", b"http/1.0")
    assert tls.alpn_protocols(None, h2=True) == (b"h2", b"http/1.1", b"http/1.0")
    assert tls.alpn_protocols(1.1) == (b"http/1.1",)
    assert tls.alpn_protocols(1.0) == (b"http/1.0",)
    assert tls.alpn_protocols(2) == ()
    assert tls.alpn_protocols(2, h2=True) == (b"h2",)


def new_session(kind: str, protocols: tuple[bytes, ...]) -> Any:
    """A server session of the engine ``kind`` (``pyopenssl`` or ``ssl``) on a generated context."""
    from prefork import tlscontext

    ctx = tlscontext.generated(kind, "localhost", protocols)
    return tlscontext.new_session(kind, ctx)


def handshake_in_memory(session: Any, alpn: list[str]) -> ssl.SSLObject:
    """A Python ssl client on memory BIOs, handshaken with ``session``; bytes moved by hand."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(alpn).wrap_bio(incoming, outgoing)
    for _ in range(10):
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            session.receive_data(outgoing.read())
            assert session.read() == b""
            incoming.write(session.data_to_send())
    client.outgoing, client.incoming = outgoing, incoming  # type: ignore[attr-defined]
    return client


@pytest.mark.parametrize("kind", ["pyopenssl", "ssl"])
def test_session_in_memory_against_ssl_module(kind: str) -> None:
    """Two in-memory peers: prefork's session and Python's ssl, bytes moved by hand."""
    session = new_session(kind, tls.alpn_protocols(None))
    client = handshake_in_memory(session, ["http/1.1"])
    incoming, outgoing = client.incoming, client.outgoing  # type: ignore[attr-defined]
    session.receive_data(outgoing.read())  # the client's Finished
    assert session.read() == b""
    assert session.established and session.alpn == b"http/1.1"
    assert isinstance(session.connection, connection_class(kind))
    client.write(b"x" * 100_000)
    session.receive_data(outgoing.read())
    assert session.read() == b"x" * 100_000
    session.send(b"y" * 70_000)
    incoming.write(session.data_to_send(70_000))
    got = b""
    while len(got) < 70_000:
        got += client.read(100_000)
    assert got == b"y" * 70_000
    with contextlib.suppress(ssl.SSLWantReadError):
        client.unwrap()  # close_notify
    session.receive_data(outgoing.read())
    assert session.read() == b"" and session.peer_closed
    session.shutdown()
    assert session.data_to_send()  # our close_notify
    assert session.read() == b""  # after close_notify, nothing more is read


@pytest.mark.parametrize("kind", ["pyopenssl", "ssl"])
@pytest.mark.parametrize("piece", [1, 2, 5, 6, 7, 100, 16389, 70001])
def test_session_reads_records_cut_anywhere(kind: str, piece: int) -> None:
    """However the ciphertext is cut (a record header split too), all plaintext comes out as
    soon as its record is complete, and no plaintext is held back (the pyOpenSSL session
    counts records from their headers to skip the read that would fail)."""
    session = new_session(kind, ())
    client = handshake_in_memory(session, [])
    outgoing = client.outgoing  # type: ignore[attr-defined]
    session.receive_data(outgoing.read())
    assert session.read() == b""
    sent = [pattern(n) for n in (1, 300, 16384, 16385, 40000, 0, 7)]
    stream = b""
    for message in sent:
        if message:
            client.write(message)
        stream += outgoing.read()
    got = b""
    for start in range(0, len(stream), piece):
        session.receive_data(stream[start : start + piece])
        got += session.read()
    assert got == b"".join(sent)
    client.write(b"last")  # one more record: the count is still right
    session.receive_data(outgoing.read())
    assert session.read() == b"last"


@pytest.mark.parametrize("kind", ["pyopenssl", "ssl"])
def test_session_rejects_a_bad_hello_with_an_alert(kind: str) -> None:
    session = new_session(kind, ())
    session.receive_data(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00")  # a ServerHello
    with pytest.raises(tls.TLSError, match=r"(?i)unexpected.message"):
        session.read()
    assert session.data_to_send()[:1] == b"\x15"  # the alert that tells the peer why


def test_record_too_long_after_handshake_fails_at_once() -> None:
    """A header claiming more than a record may hold is given to OpenSSL at once (it fails
    there), not waited for: the pyOpenSSL session counts records from their headers."""
    session = new_session("pyopenssl", ())
    client = handshake_in_memory(session, [])
    session.receive_data(client.outgoing.read())  # type: ignore[attr-defined]
    assert session.read() == b""
    session.receive_data(b"\x17\x03\x03\xff\xff" + b"\x00" * 10)
    with pytest.raises(tls.TLSError):
        session.read()


@pytest.mark.parametrize("mode", [True, None], ids=["tls", "sniff"])
def test_each_socket_is_reported_done_once(serve, mode: bool | None) -> None:
    done: list[int] = []
    running = serve(make_echo([]), tls=mode)
    running.call(lambda: setattr(running.server, "on_socket_done", lambda: done.append(1)))
    with https(running) as conn:  # set-up handed on to HTTP/1: not "done" until it closes
        request(conn, "GET", "/")
    with running.connect() as sock:  # a failed handshake
        sock.sendall(GARBAGE["hello-header-then-nonsense"])
        wait_closed(sock)
    expected = 2
    if mode is None:
        with running.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            wait_closed(sock)
        expected = 3
    running.stop()
    assert len(done) == expected


def test_body_read_in_pieces_by_a_slow_handler(serve) -> None:
    """Back-pressure through TLS: the server pauses and resumes the socket as the handler reads."""
    got: list[int] = []

    async def slow(server: Any, stream: Any) -> None:
        await stream.get_headers()
        digest, total = hashlib.sha256(), 0
        while (chunk := await stream.get_next_chunk()) is not None:
            digest.update(chunk)
            total += len(chunk)
            await asyncio.sleep(0)  # let the loop run between pieces
        got.append(total)
        body = digest.hexdigest().encode()
        await stream.write_headers(response_headers("200", content_length=str(len(body))), False)
        await stream.write_chunk(body, True)

    running = serve(slow, tls=True)
    upload = pattern(8 * 1024 * 1024)
    with https(running) as conn:
        conn.request("POST", "/", body=upload)
        resp = conn.getresponse()
        assert resp.read() == hashlib.sha256(upload).hexdigest().encode()
    assert got == [len(upload)]


@pytest.mark.parametrize("mode", [True, None], ids=["tls", "sniff"])
def test_https_over_a_unix_socket(serve, tmp_path, mode: bool | None) -> None:
    names: list[Any] = []

    async def onstream(server: Any, stream: Any) -> None:
        names.append((stream.peername(), stream.localname(), stream.checktls() is not None))
        await make_echo([])(server, stream)

    path = str(tmp_path / "tls.sock")
    running = serve(onstream, path=path, tls=mode)
    with tls_socket(running) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = wait_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200 ") and b'"scheme": "https"' in reply
    assert names == [((socket.AF_UNIX, ""), (socket.AF_UNIX, path), True)]


# -- the file path and back-pressure through each engine -------------------------------------------


def test_write_body_from_file_over_tls_falls_back_from_sendfile(serve, tmp_path) -> None:
    """No sendfile(2) through TLS: the file is read and encrypted, on every engine."""
    data = pattern(3 * 1024 * 1024 + 5)
    path = tmp_path / "f.bin"
    path.write_bytes(data)

    async def onstream(server: Any, stream: Any) -> None:
        await stream.get_headers()
        await stream.write_headers(response_headers("200", content_length=str(len(data))), False)
        with path.open("rb") as f:
            await stream.write_body_from_file(f)

    running = serve(onstream, tls=True)
    with https(running) as conn:
        assert request(conn, "GET", "/f") == data
        assert request(conn, "GET", "/again") == data  # and the connection lives on


def test_write_timeout_cuts_off_a_tls_client_that_reads_nothing(serve) -> None:
    """Write back-pressure through TLS: a client that reads nothing is cut off at
    write_timeout, and the handler's write raises BrokenPipeError."""
    outcome: list[Any] = []

    async def onstream(server: Any, stream: Any) -> None:
        if (await stream.get_headers()).get(":path") != "/big":
            await stream.write_headers(response_headers("200", content_length="0"), True)
            return
        await stream.write_headers(response_headers("200"), False)
        started = time.monotonic()
        try:
            while time.monotonic() - started < 20:
                await stream.write_chunk(b"x" * 65536, False)
        except Exception as exc:
            outcome.append((type(exc), time.monotonic() - started))
            raise

    running = serve(onstream, tls=True, write_timeout=0.5)
    with running.connect() as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with client_context().wrap_socket(raw) as sock:
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
            wait_until(lambda: outcome, timeout=15, what="the write to be cut off")
    kind, after = outcome[0]
    assert kind is BrokenPipeError and after < 10, outcome
    assert_serves_https(running)
