"""WSGI hello app for gunicorn (gthread) in tools/bench: ``tools.peers.wsgi_hello:app``.

Same routes and work as the prefork and ASGI apps (tools/peers/work.py): hello, /burn, /pid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tools.peers.work import respond


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # Drain the request body (none for GET, but stay correct for any method).
    if (length := environ.get("CONTENT_LENGTH")) and length.isdigit():
        environ["wsgi.input"].read(int(length))
    body = respond(environ.get("PATH_INFO", "/"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
