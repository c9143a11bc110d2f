"""Test app (ASGI): the lifespan startup waits at a gate the test holds. It connects to the
Unix socket named by ``$ASGI_GATE`` (the test accepts: the startup has begun) and completes only
when the test sends a byte (or closes). A request gets ``started`` as its body.
"""

import asyncio
import os
import socket


async def _wait_at_the_gate():
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, os.environ["ASGI_GATE"])
        await loop.sock_recv(sock, 1)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _wait_at_the_gate()
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b"started"
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
