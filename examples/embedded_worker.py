"""A prefork worker inside an existing asyncio program (an "embedded" worker).

The program keeps doing its own work (here: a ticker task) while it also serves HTTP
connections that a prefork master hands it through the master's attach socket::

    prefork --workers 1 --attach-socket /tmp/prefork.attach examples/hello.py:reply &
    python examples/embedded_worker.py /tmp/prefork.attach

The master does not respawn this process; if it exits, the master hands its unacknowledged
connections to another worker and carries on.
"""

from __future__ import annotations

import asyncio
import os
import sys

from prefork.headers import Headers
from prefork.process.worker import Worker, attach


async def onstream(server, stream):
    await stream.get_headers()
    body = f"served by embedded worker {os.getpid()}\n".encode()
    res = Headers()
    res.append(":status", "200")
    res.append("content-type", "text/plain")
    res.append("content-length", str(len(body)))
    await stream.write_headers(res, False)
    await stream.write_chunk(body, True)


async def ticker() -> None:
    """Stands for the rest of the program: it keeps running beside the worker."""
    while True:
        await asyncio.sleep(60)
        print(f"embedded worker {os.getpid()} still here", file=sys.stderr, flush=True)


async def main(path: str) -> None:
    other_work = asyncio.create_task(ticker())
    worker = Worker(onstream, attach(path), server_options={"tls": False})
    try:
        await worker.serve()  # until the master says close, or goes away
    finally:
        other_work.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/prefork.attach"))
