"""Test app: answers every request with 200 "hello\n"."""

from prefork.headers import Headers

BODY = b"hello\n"


async def onstream(server, stream):
    req = await stream.get_headers()
    h = Headers()
    h.append(":status", "200")
    h.append("content-type", "text/plain")
    h.append("content-length", str(len(BODY)))
    await stream.write_headers(h, req.get(":method") == "HEAD")
    if req.get(":method") != "HEAD":
        await stream.write_chunk(BODY, True)
