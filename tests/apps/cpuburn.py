"""Test app: busy-loops ``ms`` milliseconds (query, e.g. /?ms=3000) on the event loop, blocking it.

With ``ignore_abrt=1`` the worker first ignores SIGABRT (so only SIGKILL can stop it). The body
names the worker's pid.
"""

import os
import signal
import time
from urllib.parse import parse_qs, urlsplit

from prefork.headers import Headers


async def onstream(server, stream):
    req = await stream.get_headers()
    query = parse_qs(urlsplit(req.get(":path")).query)
    ms = int(query.get("ms", ["0"])[0])
    if query.get("ignore_abrt") == ["1"]:
        signal.signal(signal.SIGABRT, signal.SIG_IGN)
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:  # no await: the worker's loop (and its heartbeat) stops
        pass
    body = f"{os.getpid()}\n".encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)
