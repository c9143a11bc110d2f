"""Test app: answers 200 with its headers at once, sleeps ``ms`` milliseconds (from the query
string, e.g. ``/?ms=1000``), then sends the body. A client that has read the headers knows its
request is in flight in a worker.
"""

import asyncio
from urllib.parse import parse_qs, urlsplit

from prefork.headers import Headers


async def onstream(server, stream):
    req = await stream.get_headers()
    query = parse_qs(urlsplit(req.get(":path")).query)
    ms = int(query.get("ms", ["0"])[0])
    body = f"slept {ms}\n".encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await asyncio.sleep(ms / 1000)
    await stream.write_chunk(body, True)
