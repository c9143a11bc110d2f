"""Test app (ASGI): ``app`` starts up (``state``: the worker's pid) and shuts down, appending
``startup:<pid>``/``shutdown:<pid>`` to the file named by ``$ASGI_LIFESPAN_LOG``; a request gets
its scope's state as JSON, with ``copy`` true when that state is a copy of the lifespan's.
``failing`` answers ``lifespan.startup.failed``; so does ``app`` while the file named by
``$ASGI_LIFESPAN_FAIL_IF`` exists (a deploy whose startup fails).
"""

import json
import os

STATE = {}


def _record(event):
    path = os.environ.get("ASGI_LIFESPAN_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{event}:{os.getpid()}\n")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            event = message["type"].rpartition(".")[2]
            fail_if = os.environ.get("ASGI_LIFESPAN_FAIL_IF")
            if event == "startup" and fail_if and os.path.exists(fail_if):
                await send({"type": "lifespan.startup.failed", "message": "no database 7d1c"})
                return
            if event == "startup":
                scope["state"]["started_by"] = os.getpid()
                STATE["lifespan"] = scope["state"]
            _record(event)
            await send({"type": f"lifespan.{event}.complete"})
            if event == "shutdown":
                return
    state = dict(scope["state"], copy=scope["state"] is not STATE.get("lifespan"))
    body = json.dumps(state).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def failing(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the database is not there"})
