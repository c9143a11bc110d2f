"""Test app: ``/block?s=8`` logs ``worker <pid> blocking for 8 s`` and then blocks its worker's
event loop in ``time.sleep`` (no heartbeat leaves: the master sees a silent worker); any other
path answers at once with the serving worker's pid as the body.
"""

import logging
import os
import time
from urllib.parse import parse_qs, urlsplit

from prefork.headers import Headers


async def onstream(server, stream):
    req = await stream.get_headers()
    url = urlsplit(req.get(":path"))
    if url.path == "/block":
        seconds = float(parse_qs(url.query).get("s", ["8"])[0])
        logging.getLogger("tests.apps.block").warning(
            "worker %d blocking for %g s", os.getpid(), seconds
        )
        time.sleep(seconds)  # no await: the worker's loop stops
    body = f"{os.getpid()}\n".encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)
