"""Test app: ``/boom`` raises before answering, ``/boom-late`` raises after its head and part of
its body, ``/slow?ms=N`` answers its head at once and its body ``N`` ms later; every answer's
body names the worker's pid."""

import asyncio
import os

from prefork.headers import Headers


async def onstream(server, stream):
    req = await stream.get_headers()
    path = req.get(":path")
    if path == "/boom":
        raise RuntimeError("boom")
    h = Headers()
    h.append(":status", "200")
    if path == "/boom-late":
        await stream.write_headers(h, False)
        await stream.write_chunk(b"partial", False)
        raise RuntimeError("boom after the head")
    body = f"{os.getpid()}\n".encode()
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    if path.startswith("/slow"):
        await asyncio.sleep(int(path.partition("ms=")[2] or 0) / 1000)
    await stream.write_chunk(body, True)
