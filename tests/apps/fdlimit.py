"""Test app: imported in a worker, it lowers the worker's RLIMIT_NOFILE to 128 descriptors, so
that a worker holding ~110 connections is at its fd limit; it answers with its pid as the body
(a keep-alive response: the connection stays open in the worker until the client closes it).
"""

import os
import resource

from prefork.headers import Headers

LIMIT = 128

resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


async def onstream(server, stream):
    await stream.get_headers()
    body = f"{os.getpid()}\n".encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)
