"""``stream.wait_disconnected()``: a handler that is not reading learns that its client left."""

from __future__ import annotations

import asyncio
from typing import Any

from h2.errors import ErrorCodes

from tests.conftest import response_headers
from tests.helpers import wait_until
from tests.test_http2 import Raw


def watcher(seen: list[Any]) -> Any:
    async def onstream(server: Any, stream: Any) -> None:
        await stream.get_headers()
        await stream.write_headers(response_headers(), False)
        await stream.write_chunk(b"waiting\n", False)
        seen.append(("before", stream.disconnected))
        await asyncio.wait_for(stream.wait_disconnected(), 10)
        seen.append(("after", stream.disconnected))
        await stream.wait_disconnected()  # at once, now
        seen.append(("again", True))

    return onstream


def test_http1_client_closing_is_seen(serve) -> None:
    seen: list[Any] = []
    running = serve(watcher(seen))
    with running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"waiting" in sock.recv(4096)
        wait_until(lambda: seen, what="the handler to watch")
    wait_until(lambda: len(seen) == 3, what="the handler to see the close")
    assert seen == [("before", False), ("after", True), ("again", True)]


def test_http2_stream_reset_is_seen_and_the_connection_lives(serve) -> None:
    seen: list[Any] = []
    running = serve(watcher(seen))
    client = Raw(running)
    try:
        sid = client.get("/")
        client.wait(lambda es: any(getattr(e, "data", b"") == b"waiting\n" for e in es))
        client.conn.reset_stream(sid, ErrorCodes.CANCEL)
        client.flush()
        wait_until(lambda: len(seen) == 3, what="the handler to see the reset")
        assert seen == [("before", False), ("after", True), ("again", True)]
    finally:
        client.close()
