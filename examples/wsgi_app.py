"""A plain WSGI (PEP 3333) application served by prefork (docs/wsgi.md).

Routes:
  /           "Hello world!"
  /echo       the request body, streamed back as it is read (curl -T bigfile)
  /count?n=5  n lines, one every 0.2 s: each leaves as it is yielded
  /source     this file, through wsgi.file_wrapper (sendfile(2) on plain HTTP/1)
  /environ    the environ's text values

Usage:
  python examples/wsgi_app.py [--host HOST] [--port PORT] [--threads N]   (one process)
  prefork --workers 4 --threads 8 examples/wsgi_app.py:app               (under a master)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

import prefork.server
from prefork import wsgi

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    route = ROUTES.get(environ["PATH_INFO"], not_found)
    return route(environ, start_response)


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello world!\n"]  # a list: prefork adds its Content-Length


def echo(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    # Content-Length or chunked: wsgi.input reads either, one chunk at a time (back-pressure)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    body = environ["wsgi.input"]
    while data := body.read(65536):
        yield data


def count(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    n = int(parse_qs(environ["QUERY_STRING"]).get("n", ["5"])[0])
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(1, n + 1):
        yield f"{i}\n".encode()
        time.sleep(0.2)  # this thread waits; the server goes on serving others


def source(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/x-python")])
    # the file is closed by prefork: it calls close() on the wrapper, which closes the file
    return environ["wsgi.file_wrapper"](open(__file__, "rb"))


def show_environ(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    lines = [f"{k}: {v}\n" for k, v in sorted(environ.items()) if isinstance(v, str)]
    start_response("200 OK", [("Content-Type", "text/plain; charset=latin-1")])
    return ["".join(lines).encode("latin-1")]


def not_found(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"Not found\n"]


ROUTES = {"/": hello, "/echo": echo, "/count": count, "/source": source, "/environ": show_environ}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    server = prefork.server.listen(
        host=args.host, port=args.port, tls=False, onstream=wsgi.onstream(app, threads=args.threads)
    )
    server.listen()
    print(f"Now listening on port {server.localname()[2]}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.loop()


if __name__ == "__main__":
    main()
