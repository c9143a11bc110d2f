"""Test app: ``/garbage`` makes its worker a bad peer: it sends ``Zgarbage``, a message the
master cannot decode, on the worker's channel (the process's one SOCK_SEQPACKET socket); any
other path answers with the serving worker's pid as the body.
"""

import os
import socket

from prefork.headers import Headers


def send_garbage() -> None:
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # not a socket
        with sock:
            if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_SEQPACKET:
                sock.send(b"Zgarbage")
                return
    raise RuntimeError("no channel found")


async def onstream(server, stream):
    req = await stream.get_headers()
    if req.get(":path") == "/garbage":
        send_garbage()
    body = f"{os.getpid()}\n".encode()
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)
