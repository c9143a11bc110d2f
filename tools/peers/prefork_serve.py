"""prefork's hello server, one process, with the TLS and HTTP version options (tools/bench).

    PYTHONPATH=. python tools/peers/prefork_serve.py --port PORT --tls true \\
        --certfile cert.pem --keyfile key.pem

Answers every request "Hello world!\\n" with a content-length (as tools/peers/prefork_hello.py
does, without its /burn, /pid and counts). --tls true|none|false and --version none|1.0|1.1|2
are ``listen()``'s ``tls`` and ``version``. With --certfile/--keyfile the context is built here
from those files (``prefork.protocol.tls.configure`` with ALPN ``h2`` allowed), so prefork uses
the same certificate and key as the peers; without them prefork generates its own.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import Any

from OpenSSL import SSL

import prefork.server
from prefork.headers import Headers
from prefork.protocol import tls as ptls

BODY = b"Hello world!\n"
CHOICES = {"true": True, "none": None, "false": False}
VERSIONS = {"none": None, "1.0": 1.0, "1.1": 1.1, "2": 2}


async def hello(server: Any, stream: Any) -> None:
    req = await stream.get_headers()
    method = req.get(":method")
    res = Headers()
    res.append(":status", "200")
    res.append("content-type", "text/plain")
    res.append("content-length", str(len(BODY)))
    await stream.write_headers(res, method == "HEAD")
    if method != "HEAD":
        await stream.write_chunk(BODY, True)


def context(certfile: str, keyfile: str, version: float | None) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate_chain_file(certfile)
    ctx.use_privatekey_file(keyfile)
    ctx.check_privatekey()
    return ptls.configure(ctx, ptls.alpn_protocols(version, h2=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", choices=tuple(CHOICES), default="false")
    p.add_argument("--version", choices=tuple(VERSIONS), default="none")
    p.add_argument("--certfile")
    p.add_argument("--keyfile")
    args = p.parse_args()
    version = VERSIONS[args.version]
    ctx = None
    if args.certfile or args.keyfile:
        if not (args.certfile and args.keyfile):
            p.error("--certfile and --keyfile go together")
        ctx = context(args.certfile, args.keyfile, version)
    server = prefork.server.listen(
        host=args.host,
        port=args.port,
        tls=CHOICES[args.tls],
        ctx=ctx,
        version=version,
        onstream=hello,
    )
    # SIGTERM (tools/bench's stop) ends the process like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        server.loop()


if __name__ == "__main__":
    main()
