"""Test app: what the worker's loop and socket are: a JSON body with the loop's class and
module, ``TCP_NODELAY`` on the connection's socket, and the peer and local names the stream
reports (``stream.peername()``, ``stream.localname()``).
"""

import asyncio
import json
import socket

from prefork.headers import Headers


async def onstream(server, stream):
    await stream.get_headers()
    loop = asyncio.get_running_loop()
    raw = stream.connection.transport.get_extra_info("socket")
    info = {
        "loop": f"{type(loop).__module__}.{type(loop).__name__}",
        "nodelay": raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
        "peer": list(stream.peername()[1:]),
        "local": list(stream.localname()[1:]),
    }
    body = json.dumps(info).encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-type", "application/json")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)
