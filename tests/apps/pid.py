"""Test app: the body is ``"<pid> <n>"``: the serving worker's pid and how many requests this
worker has answered (1, 2, ...). With ``?log=1`` it also logs a WARNING naming its pid (to the
error log), so a test can see which file each worker writes.
"""

import logging
import os

from prefork.headers import Headers

count = 0


async def onstream(server, stream):
    global count
    req = await stream.get_headers()
    count += 1
    if "log=1" in req.get(":path"):
        logging.getLogger("tests.apps.pid").warning("app log line from worker %d", os.getpid())
    body = f"{os.getpid()} {count}\n".encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, req.get(":method") == "HEAD")
    if req.get(":method") != "HEAD":
        await stream.write_chunk(body, True)
