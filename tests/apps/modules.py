"""Test app: the body is JSON ``{"pid": ..., "loaded": [...], "frozen": n}``: the serving
process's pid, which of the libraries a worker loads only on first need (``OPTIONAL``) it has
imported, and how many objects its cyclic GC leaves alone (``gc.get_freeze_count()``).

Run as a script (``python tests/apps/modules.py``) it is one ``prefork.server`` with ``tls=None``
and ``version=None`` (sniffing TLS and the HTTP/2 preface) on a free port of 127.0.0.1, which
it prints on its first line of output.
"""

import gc
import json
import os
import sys

import prefork.server
from prefork.headers import Headers

# h2 and its parts, pyOpenSSL and cryptography, wsproto, psutil (the master's), email (what
# formatted the Date field before).
OPTIONAL = ("h2", "hpack", "hyperframe", "OpenSSL", "cryptography", "wsproto", "psutil", "email")


def loaded() -> list[str]:
    return [name for name in OPTIONAL if name in sys.modules]


async def onstream(server, stream):
    req = await stream.get_headers()
    report = {"pid": os.getpid(), "loaded": loaded(), "frozen": gc.get_freeze_count()}
    body = json.dumps(report).encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-type", "application/json")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, req.get(":method") == "HEAD")
    if req.get(":method") != "HEAD":
        await stream.write_chunk(body, True)


if __name__ == "__main__":
    server = prefork.server.listen(
        host="127.0.0.1", port=0, tls=None, version=None, onstream=onstream
    )
    server.listen()
    print(server.localname()[2], flush=True)
    server.loop()
