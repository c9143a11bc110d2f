"""Quiet prefork hello app (examples/hello.py:reply logs every request to stdout).

``prefork --workers 2 --bind 127.0.0.1:PORT tools/peers/prefork_hello.py:onstream``; the work per
path (hello, /burn, /pid) and the per-process counts are tools/peers/work.py's, shared with the
ASGI and WSGI peers. Needs the repository root on PYTHONPATH (tools/bench sets it).
"""

from __future__ import annotations

from typing import Any

from prefork.headers import Headers
from tools.peers.work import respond


async def onstream(server: Any, stream: Any) -> None:
    req = await stream.get_headers()
    method = req.get(":method")
    body = respond(req.get(":path").partition("?")[0])
    res = Headers()
    res.append(":status", "200")
    res.append("content-type", "text/plain")
    res.append("content-length", str(len(body)))
    await stream.write_headers(res, method == "HEAD")
    if method != "HEAD":
        await stream.write_chunk(body, True)
