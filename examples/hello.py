"""A simple HTTP server (port of lua-http's examples/server_hello.lua).

Answers every request with "Hello world!" (no body for HEAD) and logs it to stdout.

Usage: python examples/hello.py [--host HOST] [--port PORT]   (port 0: any free port)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import prefork.server
from prefork.headers import Headers


async def reply(server, stream):
    req_headers = await stream.get_headers()
    method = req_headers.get(":method")
    if LOG:
        print(
            f'[{time.strftime("%d/%b/%Y:%H:%M:%S %z")}] "{method} {req_headers.get(":path")} '
            f'HTTP/{stream.peer_version:g}" "{req_headers.get("referer", "-")}" '
            f'"{req_headers.get("user-agent", "-")}"',
            flush=True,
        )
    res_headers = Headers()
    res_headers.append(":status", "200")
    res_headers.append("content-type", "text/plain")
    res_headers.append("content-length", str(len(BODY)))  # lua's example lets it be chunked
    await stream.write_headers(res_headers, method == "HEAD")
    if method != "HEAD":
        await stream.write_chunk(BODY, True)


def onerror(server, context, op, err, errno):
    print(f"{op} on {context!r} failed: {err!r}", file=sys.stderr, flush=True)


LOG = True
BODY = b"Hello world!\n"


def main() -> None:
    global LOG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args()
    LOG = not args.quiet
    server = prefork.server.listen(
        host=args.host, port=args.port, tls=False, onstream=reply, onerror=onerror
    )
    server.listen()  # bind now, so that localname() knows the port
    print(f"Now listening on port {server.localname()[2]}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.loop()


if __name__ == "__main__":
    main()
