"""prefork's hello server, one process, with the TLS and HTTP version options (tools/bench).

    PYTHONPATH=. python tools/peers/prefork_serve.py --port PORT --tls true \\
        --certfile cert.pem --keyfile key.pem [--tls-engine ssl] [--loop uvloop]

Answers every request "Hello world!\\n" with a content-length (as tools/peers/prefork_hello.py
does, without its /burn, /pid and counts). --tls true|none|false, --version none|1.0|1.1|2 and
--tls-engine auto|pyopenssl|ssl are ``listen()``'s ``tls``, ``version`` and ``tls_engine``.
With --certfile/--keyfile the context is built here from those files, with prefork's defaults
and ALPN ``h2`` allowed (``prefork.tlscontext.load``, for the engine --tls-engine picks), so
prefork uses the same certificate and key as the peers; without them prefork generates its own.
--loop uvloop runs the server on a uvloop loop (``cq=``).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import Any

import prefork.server
from prefork import tlscontext
from prefork.headers import Headers
from prefork.protocol.tlscommon import alpn_protocols

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


def context(certfile: str, keyfile: str, version: float | None, engine: str) -> Any:
    alpn = alpn_protocols(version, h2=True)
    return tlscontext.load(tlscontext.engine_of(engine, None), certfile, keyfile, alpn)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", choices=tuple(CHOICES), default="false")
    p.add_argument("--version", choices=tuple(VERSIONS), default="none")
    p.add_argument("--certfile")
    p.add_argument("--keyfile")
    p.add_argument("--tls-engine", choices=tlscontext.ENGINES, default="auto")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = p.parse_args()
    version = VERSIONS[args.version]
    ctx = None
    if args.certfile or args.keyfile:
        if not (args.certfile and args.keyfile):
            p.error("--certfile and --keyfile go together")
        ctx = context(args.certfile, args.keyfile, version, args.tls_engine)
    loop = None
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    server = prefork.server.listen(
        host=args.host,
        port=args.port,
        tls=CHOICES[args.tls],
        ctx=ctx,
        tls_engine=args.tls_engine,
        version=version,
        cq=loop,
        onstream=hello,
    )
    # SIGTERM (tools/bench's stop) ends the process like Ctrl-C. Under uvloop an exception from
    # a Python signal handler does not stop the loop: close the server, loop() then returns.
    if loop is not None:
        loop.add_signal_handler(signal.SIGTERM, server.close)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        server.loop()


if __name__ == "__main__":
    main()
