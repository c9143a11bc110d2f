"""Which TLS engine a server uses, and the contexts prefork makes for either.

Two engines (docs/tls.md, "Two engines"): ``pyopenssl`` (an ``OpenSSL.SSL.Context``, the seed's
``ctx``) and ``ssl`` (the standard library's ``ssl.SSLContext``). The ``tls_engine`` option
says which; ``auto`` follows the ``ctx`` given, and without one takes ``ssl``, the faster.

The contexts made here: the generated self-signed one (``ctx`` None) and the one the command
loads from ``--certfile``/``--keyfile``, both with prefork's defaults and ALPN. Each library is
imported only when a context of its kind is made.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from typing import Any

from prefork.protocol.tlscommon import Session

ENGINES = ("auto", "pyopenssl", "ssl")


def engine_of(tls_engine: str, ctx: Any) -> str:
    """The engine a server with these options uses: ``"pyopenssl"`` or ``"ssl"``.

    Raises:
        ValueError: ``tls_engine`` names one engine and ``ctx`` is the other's context, or
            ``ctx`` is an ``ssl.SSLContext`` made for clients.
    """
    if ctx is None:
        return "pyopenssl" if tls_engine == "pyopenssl" else "ssl"
    kind = "ssl" if isinstance(ctx, ssl.SSLContext) else "pyopenssl"
    if kind == "ssl" and ctx.protocol == ssl.PROTOCOL_TLS_CLIENT:
        # ssl.create_default_context() makes one: every handshake would fail to start
        raise ValueError(
            "option 'ctx' is a client context (ssl.PROTOCOL_TLS_CLIENT): a server needs "
            "ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)"
        )
    if tls_engine not in ("auto", kind):
        raise ValueError(
            f"option 'tls_engine' is {tls_engine!r} but option 'ctx' is a "
            f"{type(ctx).__module__}.{type(ctx).__qualname__} (the {kind!r} engine's)"
        )
    return kind


def new_session(engine: str, ctx: Any) -> Session:
    """A server-side session of ``engine`` on ``ctx``, for prefork's own TLS protocol."""
    if engine == "ssl":
        from prefork.protocol.stdtls import StdTLSSession

        return StdTLSSession(ctx)
    from prefork.protocol.tls import TLSSession

    return TLSSession(ctx)


def generated(engine: str, host: str | None, protocols: Sequence[bytes]) -> Any:
    """A context with a fresh self-signed certificate for ``host`` (the seed's ``ctx = nil``).

    Args:
        engine: ``"pyopenssl"`` or ``"ssl"``.
        host: the host the server listens on (``prefork.protocol.selfsigned.self_signed``).
        protocols: ALPN ids to accept, most preferred first.
    """
    if engine == "pyopenssl":
        from prefork.protocol import tls

        return tls.default_context(host, protocols)
    from cryptography.hazmat.primitives import serialization

    from prefork.protocol.selfsigned import self_signed

    cert, key = self_signed(host)
    # ssl.SSLContext loads keys from files only: the key goes through a private temporary
    # directory, encrypted with a password that never leaves this process, and is gone at once.
    import secrets  # on first use: the command imports this module, and workers fork from it
    import tempfile

    password = secrets.token_hex(16).encode()
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="prefork-tls-") as directory:
        path = os.path.join(directory, "self-signed.pem")
        with open(path, "wb", opener=lambda p, flags: os.open(p, flags, 0o600)) as f:
            f.write(pem)
        return _ssl_context(path, None, protocols, password)


def load(engine: str, certfile: str, keyfile: str | None, protocols: Sequence[bytes]) -> Any:
    """A context of ``engine`` with prefork's defaults and this certificate chain and key.

    Raises:
        RuntimeError: a file cannot be read, or the certificate and key do not load or match.
    """
    for path in filter(None, (certfile, keyfile)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise RuntimeError(f"cannot read {path!r}: {exc.strerror}") from None
    if engine == "pyopenssl":
        return _pyopenssl_context(certfile, keyfile, protocols)
    try:
        return _ssl_context(certfile, keyfile, protocols)
    except (OSError, ssl.SSLError) as exc:
        raise RuntimeError(f"cannot load certificate {certfile!r}: {exc}") from None


def _ssl_context(
    certfile: str, keyfile: str | None, protocols: Sequence[bytes], password: bytes | None = None
) -> ssl.SSLContext:
    from prefork.protocol import stdtls

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    stdtls.configure(ctx, protocols)
    ctx.load_cert_chain(certfile, keyfile or certfile, password)  # checks they match
    return ctx


def _pyopenssl_context(certfile: str, keyfile: str | None, protocols: Sequence[bytes]) -> Any:
    from OpenSSL import SSL

    from prefork.protocol import tls

    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    tls.configure(ctx, protocols)
    try:
        ctx.use_certificate_chain_file(certfile)
        ctx.use_privatekey_file(keyfile or certfile)
        ctx.check_privatekey()
    except (OSError, SSL.Error) as exc:
        raise RuntimeError(f"cannot load certificate {certfile!r}: {exc}") from None
    return ctx
