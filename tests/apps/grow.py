"""Test app: ``GET /grow`` makes this worker's RSS grow by about 60 MiB (kept in a module
global, every page written so it is resident). The body is ``"<pid> <grown MiB>"``.
"""

import os

from prefork.headers import Headers

HOARD: list[bytes] = []
STEP = 60 << 20


async def onstream(server, stream):
    req = await stream.get_headers()
    if req.get(":path") == "/grow":
        HOARD.append(b"\x01" * STEP)  # bytes * n writes every page: resident, not lazily mapped
    body = f"{os.getpid()} {len(HOARD) * (STEP >> 20)}\n".encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, req.get(":method") == "HEAD")
    if req.get(":method") != "HEAD":
        await stream.write_chunk(body, True)
