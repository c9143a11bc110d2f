"""Plain helpers shared by the tests: echo handlers (HTTP and WebSocket), deterministic body
bytes, reading from sockets, running curl, and waiting on an observable condition with a
deadline.

Fixtures live in tests/conftest.py; starting and stopping a real master in
tests/master_helpers.py.
"""

from __future__ import annotations

import hashlib
import queue
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from prefork import websocket
from prefork.headers import Headers

FIRST_PAUSE = 0.005  # seconds between the first two polls
WS_TIMEOUT = 10  # seconds for the WebSocket echo's own ping
CURL = shutil.which("curl")
need_curl = pytest.mark.skipif(CURL is None, reason="curl not installed")


async def echo(server: Any, stream: Any) -> None:
    """Answer with the request body and, in x- headers, what the server saw of the request.

    ``x-method``, ``x-path``, ``x-scheme``, ``x-authority`` (``-`` when absent) from the
    request's pseudo-fields; ``x-peer-version`` (the stream's) and ``x-version`` (the
    connection's); ``x-tls`` (``yes``/``no``); ``x-request-te`` and ``x-request-cl``, the request's
    transfer-encoding and content-length (``-`` when absent); ``x-peer``, the connection's peer
    as ``host:port`` or ``unix``.
    """
    headers = await stream.get_headers()
    body = await stream.get_body_as_string()
    peer = stream.connection.peername()  # the connection's (a stream's own is tested apart)
    h = Headers()
    for name, value in [
        (":status", "200"),
        ("content-type", "application/octet-stream"),
        ("content-length", str(len(body))),
        ("x-method", headers.get(":method")),
        ("x-path", headers.get(":path")),
        ("x-scheme", headers.get(":scheme")),
        ("x-authority", headers.get(":authority") or "-"),
        ("x-peer-version", str(stream.peer_version)),
        ("x-version", str(stream.connection.version)),
        ("x-tls", "yes" if stream.checktls() is not None else "no"),
        ("x-request-te", headers.get("transfer-encoding") or "-"),
        ("x-request-cl", headers.get("content-length") or "-"),
        ("x-peer", f"{peer[1]}:{peer[2]}" if len(peer) == 3 else "unix"),
    ]:
        h.append(name, value)
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)


async def plain_page(stream: Any) -> None:
    """Answer 200 ``plain\\n`` (what the WebSocket handlers serve where they do not upgrade)."""
    body = b"plain\n"
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", str(len(body)))
    await stream.write_headers(h, False)
    await stream.write_chunk(body, True)


def websocket_echo(
    seen: queue.Queue, protocols: tuple[str, ...] = (), extra: Headers | None = None, **options: Any
) -> Any:
    """A handler: an echo WebSocket for every CONNECT and for ``/ws``; 200 "plain" elsewhere.

    It accepts with ``protocols`` and the ``extra`` response fields (``options`` go to
    ``websocket.new_from_stream``) and reports into ``seen``: ``("refused", status)``, or
    ``("accepted", protocol, extensions)`` then ``("closed", code, reason)``. The message
    ``server-ping`` makes it ping (and answer ``pong received``), ``server-close`` close with
    4001 "done"; anything else comes back.
    """

    async def onstream(server: Any, stream: Any) -> None:
        req = await stream.get_headers()
        if req.get(":method") != "CONNECT" and req.get(":path") != "/ws":
            await plain_page(stream)
            return
        try:
            ws = await websocket.new_from_stream(stream, req, **options)
        except websocket.HandshakeError as exc:
            seen.put(("refused", exc.status))
            return
        async with ws:
            await ws.accept(protocols=list(protocols), headers=extra)
            seen.put(("accepted", ws.protocol, ws.extensions))
            async for message in ws:
                if message == "server-ping":
                    await ws.ping(b"abc", timeout=WS_TIMEOUT)
                    message = "pong received"
                elif message == "server-close":
                    await ws.close(4001, "done")
                    break
                await ws.send(message)
        seen.put(("closed", ws.close_code, ws.close_reason))

    return onstream


def pattern(size: int) -> bytes:
    """``size`` deterministic bytes that do not repeat (so a reordering or a drop shows); each
    is a prefix of any longer one."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def read_response(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Read until the peer closes (bounded by the socket's timeout and ``limit`` bytes)."""
    parts = []
    total = 0
    while total < limit:
        data = sock.recv(65536)
        if not data:
            break
        parts.append(data)
        total += len(data)
    return b"".join(parts)


def curl(*args: str, max_time: float = 10) -> subprocess.CompletedProcess[bytes]:
    """Run ``curl -sS --noproxy '*' --max-time MAX_TIME ARGS`` to completion.

    The proxy environment is ignored (the servers are local), and the run is killed 5 s after
    curl's own ``--max-time`` should have ended it. The caller checks the return code.
    """
    assert CURL is not None
    argv = [CURL, "-sS", "--noproxy", "*", "--max-time", str(max_time), *args]
    return subprocess.run(argv, capture_output=True, timeout=max_time + 5, check=False)


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10,
    what: str = "condition",
    *,
    interval: float = 0.02,
) -> Any:
    """Poll ``predicate`` until it returns something true, and return that.

    The first polls come 5 ms apart, so that a change in this process (a server thread's
    state) is seen at once; the pause then doubles up to ``interval``, so that a long wait on
    another process (a log line, a pid, a request answered) does not keep a busy machine busier.
    The predicate is polled once more at the deadline.

    Args:
        predicate: cheap, and safe to call any number of times.
        timeout: seconds until the deadline.
        what: what is waited for, named in the failure.
        interval: the longest pause between two polls, in seconds.

    Returns:
        The predicate's first true result.

    Raises:
        AssertionError: the deadline passed with the predicate still false.
    """
    deadline = time.monotonic() + timeout
    pause = min(FIRST_PAUSE, interval)
    while not (result := predicate()):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(min(pause, left))
        pause = min(pause * 2, interval)
    return result
