"""A plain ASGI 3 application (no framework) with HTTP, a WebSocket and lifespan, on prefork.

Under the prefork command (workers, lifespan before each worker is ready):

    prefork examples/asgi_app.py:app --bind 127.0.0.1:8000

or on one prefork server in this process (no master):

    python examples/asgi_app.py [--host HOST] [--port PORT]

Then: ``curl -d hello http://localhost:8000/echo``, ``curl http://localhost:8000/count``, or
``python -m websockets ws://localhost:8000/ws`` (each message comes back upper-cased).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import prefork.asgi
import prefork.server


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    elif scope["type"] == "websocket":
        await shout(receive, send)
    elif scope["path"] == "/echo":
        await echo(receive, send)
    else:
        scope["state"]["counter"].append(scope["path"])  # the lifespan's list, shared
        body = f"{len(scope['state']['counter'])} requests so far\n".encode()
        await send({"type": "http.response.start", "status": 200, "headers": TEXT})
        await send({"type": "http.response.body", "body": body})


TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["counter"] = []  # every request's scope gets a copy of state
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def echo(receive, send):
    """Streams the request body back, piece by piece, as it arrives."""
    await send({"type": "http.response.start", "status": 200, "headers": TEXT})
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # the client left
        more = message["more_body"]
        await send({"type": "http.response.body", "body": message["body"], "more_body": more})
        if not more:
            return


async def shout(receive, send):
    """A WebSocket that answers each text message upper-cased, bytes unchanged."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"].upper()})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def main(host: str, port: int) -> None:
    lifespan = prefork.asgi.Lifespan(app)
    await lifespan.startup()
    server = prefork.server.listen(
        host=host, port=port, tls=False, onstream=prefork.asgi.onstream(app, state=lifespan.state)
    )
    server.listen()  # bind now, so that localname() knows the port
    print(f"Now listening on port {server.localname()[2]}", file=sys.stderr, flush=True)
    try:
        await server.serve()
    finally:
        await lifespan.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.host, args.port))
