"""Shared fixtures: real servers on 127.0.0.1 (port 0) run in a thread, stopped in teardown;
real masters in their own session, killed by process group in teardown.

``serve(onstream, **options)`` starts ``prefork.server.listen(...)`` with ``server.loop()`` in a
thread of its own and returns a :class:`Running` handle; teardown closes every server it
started and joins its thread with a bound. ``Running.call(fn)`` runs ``fn`` on the server's
loop thread (the server is not thread-safe, like any asyncio object).

``start_master(app, *options, workers=2, ...)`` runs ``python -m prefork`` in its own session
and returns a :class:`~tests.master_helpers.MasterProc`, by default once it serves (see
:meth:`tests.master_helpers.Masters.start`); teardown SIGKILLs the process group of every master
it started (its workers with it) and waits for the master.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import prefork.server
from prefork.headers import Headers
from tests.helpers import read_response as read_response  # imported from here by some tests
from tests.master_helpers import MasterProc, Masters
from tests.tls_helpers import apply_engine

JOIN_TIMEOUT = 15


async def hello(server: Any, stream: Any) -> None:
    """Answer 200 "Hello world!\\n" with a content-length, reading (and ignoring) the body."""
    await stream.get_headers()
    await stream.get_body_as_string()
    h = Headers()
    h.append(":status", "200")
    h.append("content-type", "text/plain")
    h.append("content-length", "13")
    await stream.write_headers(h, False)
    await stream.write_chunk(b"Hello world!\n", True)


def response_headers(status: str = "200", **fields: str) -> Headers:
    h = Headers()
    h.append(":status", status)
    for name, value in fields.items():
        h.append(name.replace("_", "-"), value)
    return h


class Running:
    """A server running ``loop()`` in a thread."""

    def __init__(self, server: prefork.server.Server) -> None:
        self.server = server
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="prefork-test-server", daemon=True)
        family, *rest = server.localname()
        self.family = family
        if family == socket.AF_UNIX:
            self.path = rest[0]
        else:
            self.host, self.port = rest
            host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
            self.url = f"http://{host}:{self.port}"
        self.thread.start()

    def _run(self) -> None:
        try:
            self.server.loop()
        except BaseException as exc:
            self.errors.append(exc)

    def connect(self, timeout: float = 10) -> socket.socket:
        """A raw client socket connected to the server."""
        if self.family == socket.AF_UNIX:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self.path)
            return sock
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def call(self, fn: Callable[[], Any], timeout: float = 10) -> Any:
        """Run ``fn()`` on the server's loop thread and return its result."""
        loop = self.server._loop
        assert loop is not None
        if not self.thread.is_alive():
            return fn()
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result(timeout)

    def stop(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
                self.call(self.server.close)
            self.thread.join(JOIN_TIMEOUT)
            assert not self.thread.is_alive(), "server thread did not stop"
        else:
            self.server.close()


@pytest.fixture
def tls_engine() -> str:
    """The TLS engine of the servers ``serve`` starts: ``auto`` unless a module or test
    parametrizes this fixture with ``tests.tls_helpers.ENGINES``."""
    return "auto"


@pytest.fixture
def serve(tls_engine: str) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def start(onstream: Callable[..., Any] = hello, **options: Any) -> Running:
        if "path" not in options:
            options.setdefault("host", "127.0.0.1")
            options.setdefault("port", 0)
        options.setdefault("tls", False)
        loop = apply_engine(tls_engine, options)
        if loop is not None:
            loops.append(loop)
        server = prefork.server.listen(onstream=onstream, **options)
        server.listen()
        running = Running(server)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
    for loop in loops:
        loop.close()


@pytest.fixture
def start_master(tmp_path: Path) -> Iterator[Callable[..., MasterProc]]:
    with Masters(tmp_path) as masters:
        yield masters.start


def run_async(coro: Any, timeout: float = 20) -> Any:
    """Run a client coroutine on a fresh loop, bounded by ``timeout``."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())
