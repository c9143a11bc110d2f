"""The two TLS engines (docs/tls.md, "Two engines"): which one a server uses (``tls_engine`` and
``ctx``), what ``checktls()`` gives on each, and the command's ``--tls-engine`` with
``--certfile``.

Every other TLS test runs on each engine too (tests/test_tls.py's ``tls_engine`` fixture, the
``each_engine`` mark elsewhere); here are the choices themselves.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

import prefork.server
from prefork.aio.tls import TLSTransport
from prefork.protocol.selfsigned import self_signed
from tests.conftest import hello, response_headers
from tests.helpers import wait_until
from tests.master_helpers import app, free_port, run_prefork
from tests.tls_helpers import ENGINES, caller_context


def client_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def https_get(port: int, path: str = "/", alpn: list[str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port, context=client_context(alpn or ["http/1.1"]), timeout=10
    )
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def reporter(seen: list[Any]) -> Any:
    """A handler that records ``(checktls(), the connection's transport, its extra info
    ssl_object and peername)``, while the connection is open."""

    async def onstream(server: Any, stream: Any) -> None:
        await stream.get_headers()
        transport = stream.connection.transport
        info = transport.get_extra_info("ssl_object"), transport.get_extra_info("peername")
        seen.append((stream.checktls(), transport, *info))
        await stream.write_headers(response_headers("200", content_length="3"), False)
        await stream.write_chunk(b"ok\n", True)

    return onstream


CONTEXTS = {
    "none": lambda: None,
    "pyopenssl-ctx": lambda: caller_context("pyopenssl", "caller.example"),
    "ssl-ctx": lambda: caller_context("ssl", "caller.example"),
}


@pytest.mark.parametrize(
    ("engine", "ctx", "expected"),
    [
        ("auto", "none", ssl.SSLObject),  # no ctx: the faster, the ssl module
        ("auto", "pyopenssl-ctx", SSL.Connection),  # the seed's ctx: pyOpenSSL
        ("auto", "ssl-ctx", ssl.SSLObject),
        ("pyopenssl", "none", SSL.Connection),
        ("pyopenssl", "pyopenssl-ctx", SSL.Connection),
        ("ssl", "none", ssl.SSLObject),
        ("ssl", "ssl-ctx", ssl.SSLObject),
    ],
)
def test_engine_follows_tls_engine_and_ctx(serve, engine: str, ctx: str, expected: type) -> None:
    seen: list[Any] = []
    running = serve(reporter(seen), tls=True, tls_engine=engine, ctx=CONTEXTS[ctx]())
    assert https_get(running.port)[0] == 200
    assert isinstance(seen[0][0], expected)


@pytest.mark.parametrize(("engine", "ctx"), [("pyopenssl", "ssl-ctx"), ("ssl", "pyopenssl-ctx")])
def test_ctx_of_the_other_engine_is_refused_at_once(engine: str, ctx: str) -> None:
    with pytest.raises(ValueError, match="'tls_engine'"):
        prefork.server.new(onstream=hello, tls=True, tls_engine=engine, ctx=CONTEXTS[ctx]())


def test_bad_engine_or_ctx_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="tls_engine"):
        prefork.server.new(onstream=hello, tls_engine="gnutls")
    with pytest.raises(ValueError, match="client context"):
        prefork.server.new(onstream=hello, ctx=ssl.create_default_context())
    with pytest.raises(TypeError, match=r"ssl\.SSLContext or a OpenSSL\.SSL\.Context"):
        prefork.server.new(onstream=hello, ctx="cert.pem")


@pytest.mark.parametrize("tls_engine", ENGINES)
@pytest.mark.parametrize("mode", [True, None], ids=["tls", "sniff"])
def test_both_engines_run_under_prefork_tls_protocol(serve, tls_engine: str, mode: bool | None):
    """Whatever the engine and the loop, prefork's TLS protocol carries the connection (the
    loop's own TLS transport is not used: docs/tls.md), and its extra info is the engine's."""
    seen: list[Any] = []
    running = serve(reporter(seen), tls=mode, **({"port": 0} if mode is None else {}))
    assert https_get(running.port)[0] == 200
    conn, transport, ssl_object, peername = seen[0]
    assert isinstance(transport, TLSTransport)
    assert ssl_object is conn
    assert peername[0] == "127.0.0.1"


def write_certificate(directory: Path, name: str = "") -> tuple[Path, Path]:
    """A new self-signed certificate for 127.0.0.1 and its key, as PEM files in ``directory``."""
    cert, key = self_signed("127.0.0.1")
    certfile, keyfile = directory / f"cert{name}.pem", directory / f"key{name}.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


@pytest.mark.parametrize(
    ("engine", "kind"),
    [("auto", "ssl.SSLObject"), ("ssl", "ssl.SSLObject"), ("pyopenssl", "OpenSSL.SSL.Connection")],
)
def test_command_certfile_on_each_engine(start_master, tmp_path, engine: str, kind: str) -> None:
    certfile, keyfile = write_certificate(tmp_path)
    options = ["--certfile", str(certfile), "--keyfile", str(keyfile), "--tls-engine", engine]
    master = start_master("tlsinfo", *options, workers=1, wait=False)
    master.wait_workers(1)

    def served() -> bytes | None:
        master.check_running()
        try:
            return https_get(master.address)[1]
        except OSError:
            return None

    assert wait_until(served, what="an HTTPS answer") == f"{kind} http/1.1\n".encode()


@pytest.mark.parametrize("engine", ["ssl", "pyopenssl"])
def test_command_refuses_a_key_that_does_not_match(tmp_path, engine: str) -> None:
    certfile, _ = write_certificate(tmp_path)
    _, keyfile = write_certificate(tmp_path, "-other")
    options = ["--certfile", str(certfile), "--keyfile", str(keyfile), "--tls-engine", engine]
    result = run_prefork([*options, "--bind", f"127.0.0.1:{free_port()}", app("hello")])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot load certificate {str(certfile)!r}" in result.stderr


@pytest.mark.parametrize("engine", ["ssl", "pyopenssl"])
def test_command_worker_survives_bad_client_hellos(start_master, tmp_path, engine: str) -> None:
    """Garbage where a ClientHello belongs closes that connection only: the same worker
    serves on (its pid and its count of requests go on)."""
    certfile, keyfile = write_certificate(tmp_path)
    options = ["--certfile", str(certfile), "--keyfile", str(keyfile), "--tls-engine", engine]
    master = start_master("pid", *options, workers=1, wait=False)
    master.wait_workers(1)

    def served() -> bytes | None:
        master.check_running()
        try:
            return https_get(master.address)[1]
        except OSError:
            return None

    pid, count = wait_until(served, what="an HTTPS answer").split()
    for garbage in (b"\x16\x03\x01\x00\x10\x01" + b"\xff" * 15, b"\x16\x03\x03\xff\xff\x01"):
        with socket.create_connection(("127.0.0.1", master.address), timeout=10) as sock:
            sock.sendall(garbage + b"\x00" * 100)
            while sock.recv(65536):  # at most an alert, then the server closes
                pass
    assert https_get(master.address)[1].split() == [pid, str(int(count) + 1).encode()]
