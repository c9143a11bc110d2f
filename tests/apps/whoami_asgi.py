"""Test app (ASGI): the body is ``"<client host> <scheme> <http version> <pid>"``: who the
server believes the client is, as the ASGI scope says, and which worker answered."""

import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    client = scope.get("client") or ("-", 0)
    body = f"{client[0]} {scope['scheme']} {scope['http_version']} {os.getpid()}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
