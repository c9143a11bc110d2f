"""Test app: the body is ``"<pid> <peer> <socket peer> <local>"``: the serving worker's pid, the
client's address as the stream sees it (``host:port``, or ``unix``), the socket's own peer and
this end's address (the same forms), for PROXY protocol tests."""

import os

from prefork.headers import Headers


def _show(name):
    return f"{name[1]}:{name[2]}" if len(name) == 3 else "unix"


async def onstream(server, stream):
    await stream.get_headers()
    conn = stream.connection
    names = (stream.peername(), conn.socket_peername(), stream.localname())
    body = " ".join([str(os.getpid()), *map(_show, names)]).encode() + b"\n"
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)
