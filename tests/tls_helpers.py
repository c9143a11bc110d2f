"""TLS engines for the tests: every TLS test runs on each (docs/tls.md, "Two engines").

``ENGINES`` are the values of the conftest ``tls_engine`` fixture, which ``serve(...)`` turns
into its server's options: ``pyopenssl`` and ``ssl`` on asyncio's own loop, and
``ssl-uvloop``, the ``ssl`` engine on a uvloop loop (the same TLS protocol over uvloop's TCP
transport). A module parametrizes all its servers by overriding the ``tls_engine`` fixture with
``ENGINES``; a single test takes the ``each_engine`` mark.
"""

from __future__ import annotations

import datetime
import importlib.util
import ssl
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from prefork.protocol import stdtls, tls

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
_NEED_UVLOOP = pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop not installed")


def with_engines(*values: Any) -> list[Any]:
    """pytest parameters ``(*values, engine)``, one per engine (uvloop's skipped without it)."""
    return [
        pytest.param(*values, engine, marks=[_NEED_UVLOOP] if "uvloop" in engine else [])
        for engine in ("pyopenssl", "ssl", "ssl-uvloop")
    ]


ENGINES = with_engines()
each_engine = pytest.mark.parametrize("tls_engine", ENGINES)


def apply_engine(engine: str, options: dict[str, Any]) -> Any:
    """Set the server ``options`` that select ``engine`` (an ``ENGINES`` value, or ``auto``:
    nothing), where the test set none itself; returns the uvloop loop made, if one was."""
    if engine == "auto":
        return None
    if "ctx" not in options:  # a ctx of the test's own chooses its engine
        options.setdefault("tls_engine", library(engine))
    if engine == "ssl-uvloop" and "cq" not in options:
        import uvloop

        loop = options["cq"] = uvloop.new_event_loop()
        return loop
    return None


def library(engine: str) -> str:
    """``pyopenssl`` or ``ssl``: the library behind an ``ENGINES`` value (``auto``: ssl)."""
    return "pyopenssl" if engine == "pyopenssl" else "ssl"


def connection_class(engine: str) -> type:
    """What ``stream.checktls()`` returns on ``engine``."""
    return SSL.Connection if library(engine) == "pyopenssl" else ssl.SSLObject


def alpn_of(conn: Any) -> str | None:
    """The protocol ALPN chose, from what ``checktls()`` returned (either engine's)."""
    if isinstance(conn, ssl.SSLObject):
        return conn.selected_alpn_protocol()
    return (conn.get_alpn_proto_negotiated() or b"").decode() or None


def server_context(engine: str, host: str, protocols: tuple[bytes, ...]) -> Any:
    """A generated context of ``engine`` with prefork's defaults and ALPN ``protocols``."""
    from prefork import tlscontext

    return tlscontext.generated(library(engine), host, protocols)


def configure(engine: str, ctx: Any, protocols: tuple[bytes, ...]) -> Any:
    """``configure()`` of ``engine``'s module."""
    module: Any = tls if library(engine) == "pyopenssl" else stdtls
    return module.configure(ctx, protocols)


def caller_context(engine: str, common_name: str) -> Any:
    """A caller's own context: its own key and certificate, as a real deployment would load,
    with nothing of prefork's (no ALPN)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    if library(engine) == "pyopenssl":
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.use_certificate(cert)
        ctx.use_privatekey(key)
        return ctx
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "cert.pem"
        path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(path)
    return context
