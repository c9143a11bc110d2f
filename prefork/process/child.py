"""The body of a forked worker process: load the app, run a :class:`Worker`, exit.

A worker that cannot load its app, or whose ASGI lifespan startup fails, says so to the
master (``wire.ERROR``) and exits with ``WORKER_BOOT_ERROR``: the master must not respawn it
in a loop (at start-up it stops; during a reload the new generation is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from typing import Any

from prefork.aio import loop as aioloop
from prefork.process import wire
from prefork.process.worker import LifespanError, Worker

WORKER_BOOT_ERROR = 3  # exit status: the app could not be loaded; the master must not respawn


def child_main(
    app: Any,
    channel: socket.socket,
    control: int,
    server_options: dict[str, Any],
    heartbeat: float,
    access_log: bool,
) -> int:
    """The body of a forked worker process; returns its exit status."""
    from prefork.app import AppError, AppSpec, Loaded, load, load_app

    try:
        if isinstance(app, AppSpec):
            app = load_app(app)
        if isinstance(app, str):
            app = load(app)
        loaded = app if isinstance(app, Loaded) else Loaded(app, "stream")
    except AppError as exc:
        return _boot_failed(channel, str(exc))
    worker = Worker(
        loaded.onstream,
        channel,
        control,
        server_options=server_options,
        heartbeat=heartbeat,
        access_log=access_log,
        lifespan=loaded.lifespan,
    )
    loop = aioloop.new_loop(server_options.get("loop", "auto"))
    asyncio.set_event_loop(loop)
    worker._loop = loop
    worker.install_signal_handlers()
    try:
        loop.run_until_complete(worker.serve())
    except LifespanError as exc:
        return _boot_failed(channel, f"lifespan startup failed: {exc}")
    finally:
        loop.close()
    return 0


def _boot_failed(channel: socket.socket, why: str) -> int:
    """Tell the master the app cannot run here (it must not respawn in a loop); exit status."""
    with contextlib.suppress(OSError):
        channel.setblocking(True)
        channel.send(wire.error(why))
    print(f"prefork worker {os.getpid()}: {why}", file=sys.stderr, flush=True)
    return WORKER_BOOT_ERROR
