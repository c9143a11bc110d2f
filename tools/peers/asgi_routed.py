"""ASGI app of tools/bench --suite master: ``tools.peers.asgi_routed:app``.

asgi_hello's answer plus /burn and /pid, with per-process counts: the work is tools/peers/work.py's,
shared with the prefork and WSGI apps. (asgi_hello stays as it is for the single-process rows.)
"""

from __future__ import annotations

from tools.peers.asgi_hello import Receive, Scope, Send
from tools.peers.asgi_hello import app as hello
from tools.peers.work import respond


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        await hello(scope, receive, send)  # lifespan
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    body = respond(scope["path"])
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
