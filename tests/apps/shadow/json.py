"""Test app in a file named like a stdlib module: loading it must not replace ``json``."""

import json as stdlib_json

from prefork.headers import Headers


async def onstream(server, stream):
    await stream.get_headers()
    body = stdlib_json.dumps({"ok": True}).encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)
