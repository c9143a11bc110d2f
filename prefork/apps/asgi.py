"""ASGI 3 on the stream contract: an application becomes an ``onstream(server, stream)``.

:func:`onstream` makes the handler. Each request runs the application once, in the stream's
own task, with a scope read from the request head (``asgi_scope``). An HTTP request gets an
:class:`HTTPCycle`: ``receive()`` pulls the next body piece from the stream only when the
application asks (the stream's back-pressure is the application's), then waits for the client
to leave or the response to end and says ``http.disconnect``; ``send()`` writes through a
:class:`~prefork.apps.asgi_response.Response`. A WebSocket handshake (HTTP/1.1 Upgrade or an
RFC 8441 extended CONNECT) gets a :class:`~prefork.apps.asgi_websocket.WebSocketCycle` on
:mod:`prefork.websocket`.

Errors: what the application raises goes to the server, which answers 500 when nothing was
written, cuts an unfinished response off (HTTP/1: closes the connection; HTTP/2: resets the
stream) and reports it to ``onerror`` (a prefork worker logs it); but a
:class:`ClientDisconnected` that ``send()`` raised, or an exception raised while handling one
(Starlette's ``ClientDisconnect``), ends the request quietly: the client left. An application
that returns without responding gets a 500 and a logged message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from prefork.apps.asgi_response import BODY, DONE, START, TRAILERS, Response, answer
from prefork.apps.asgi_scope import (
    ClientDisconnected,
    after_disconnect,
    http_scope,
    log,
    websocket_scope,
)
from prefork.errors import ProtocolError

__all__ = ["HTTPCycle", "onstream"]

WS_MAX_SIZE = 16 * 1024 * 1024  # uvicorn's default --ws-max-size
# prefork.websocket's PING_INTERVAL and PING_TIMEOUT, not imported from it: that module loads
# wsproto, which only the first WebSocket handshake imports (docs/architecture.md).
WS_PING_INTERVAL = 20.0
WS_PING_TIMEOUT = 20.0
DISCONNECT = {"type": "http.disconnect"}

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def onstream(
    app: App,
    *,
    root_path: str = "",
    state: dict[str, Any] | None = None,
    ws_max_size: int = WS_MAX_SIZE,
    ws_per_message_deflate: bool = True,
    ws_ping_interval: float | None = WS_PING_INTERVAL,
    ws_ping_timeout: float | None = WS_PING_TIMEOUT,
) -> Callable[[Any, Any], Awaitable[None]]:
    """Make the ``onstream`` handler that serves the ASGI 3 application ``app``.

    Args:
        app: ``async def app(scope, receive, send)`` (or an object with such a ``__call__``).
        root_path: the path prefix the application is mounted at behind a proxy; it is put in
            each scope's ``root_path`` and in front of its ``path`` and ``raw_path``. A
            trailing ``/`` is dropped.
        state: the lifespan state (``Lifespan.state``); each scope gets a shallow copy.
        ws_max_size: the largest WebSocket message received, in bytes; larger closes 1009.
        ws_per_message_deflate: accept permessage-deflate (RFC 7692) when a client offers it.
        ws_ping_interval, ws_ping_timeout: the WebSocket keep-alive (``None``: off), as
            :func:`prefork.websocket.new_from_stream` takes them.

    Returns:
        ``async def onstream(server, stream)``, for ``prefork.server.new(onstream=...)``.

    Raises:
        TypeError: ``app`` is not callable. ValueError: ``ws_max_size`` below 1.
    """
    if not callable(app):
        raise TypeError(f"an ASGI application is callable, not {type(app).__name__}")
    if ws_max_size < 1:
        raise ValueError("ws_max_size must be >= 1")
    root = root_path.rstrip("/")
    ws_options = {
        "max_message_size": ws_max_size,
        "compression": ws_per_message_deflate,
        "ping_interval": ws_ping_interval,
        "ping_timeout": ws_ping_timeout,
    }

    async def asgi_onstream(server: Any, stream: Any) -> None:
        if _is_websocket(stream):
            await _run_websocket(app, stream, websocket_scope(stream, root, state), ws_options)
        else:
            await _run_http(app, stream, http_scope(stream, root, state))

    return asgi_onstream


def _is_websocket(stream: Any) -> bool:
    """A WebSocket handshake: HTTP/1.1 ``Upgrade: websocket`` (RFC 6455 section 4.2.1) or an
    HTTP/2 extended CONNECT (RFC 8441 section 4). Whether it is a valid one,
    ``websocket.new_from_stream`` checks."""
    req = stream.request_headers
    if stream.peer_version >= 2:
        return req.get(":method") == "CONNECT" and req.has(":protocol")
    upgrade = req.get_comma_separated("upgrade")
    return upgrade is not None and "websocket" in upgrade.lower()


async def _run_http(app: App, stream: Any, scope: dict[str, Any]) -> None:
    cycle = HTTPCycle(stream, scope["method"])
    response = cycle.response
    try:
        await app(scope, cycle.receive, cycle.send)
    except Exception as exc:
        if response.gone and after_disconnect(exc):
            log.debug("the client left: %s %s (%r)", *_line(stream), exc)
            return
        raise
    if response.phase == DONE:
        return
    if not response.sent:
        if response.phase == START:
            log.error("ASGI callable returned without starting response: %s %s", *_line(stream))
        else:
            log.error("ASGI callable returned without a response body: %s %s", *_line(stream))
        await answer(stream, 500)
        response.finish()
    else:  # the server cuts it off (its framing cannot be completed honestly)
        log.error("ASGI callable returned without completing response: %s %s", *_line(stream))


async def _run_websocket(
    app: App, stream: Any, scope: dict[str, Any], options: dict[str, Any]
) -> None:
    from prefork import websocket  # wsproto: loaded with the first WebSocket handshake
    from prefork.apps.asgi_websocket import WebSocketCycle

    try:
        ws = await websocket.new_from_stream(stream, stream.request_headers, **options)
    except websocket.HandshakeError:
        return  # not a valid handshake: the 400 (or 426) has been sent
    cycle = WebSocketCycle(stream, ws)
    try:
        await app(scope, cycle.receive, cycle.send)
    except Exception as exc:
        if after_disconnect(exc):  # the application passed on our ClientDisconnected
            log.debug("the client left: %s %s (%r)", *_line(stream), exc)
            return
        await cycle.failed()  # an accepted WebSocket closes with 1011
        raise
    await cycle.returned(_line(stream))


def _line(stream: Any) -> tuple[str, str]:
    req = stream.request_headers
    return req.get(":method") or "-", req.get(":path") or req.get(":authority") or "-"


class HTTPCycle:
    """One HTTP request's ``receive`` and ``send`` (ASGI HTTP, spec 2.4).

    Attributes:
        response: the :class:`~prefork.apps.asgi_response.Response` ``send()`` writes.
    """

    __slots__ = ("left", "more", "response", "stream")

    def __init__(self, stream: Any, method: str | None) -> None:
        self.stream = stream
        self.response = Response(stream, method)
        self.more = True  # the request body is not all delivered yet
        self.left = _body_length(stream)  # bytes still to come; None when unknown

    async def receive(self) -> dict[str, Any]:
        """The next ``http.request`` (body piece); after the body, waits until the client
        leaves or the response is complete, and returns ``http.disconnect``."""
        if self.more:
            return await self._read()
        response = self.response
        if response.phase != DONE and not self.stream.disconnected:
            watch = asyncio.ensure_future(self.stream.wait_disconnected())
            done = asyncio.ensure_future(response.wait_done())
            try:
                await asyncio.wait((watch, done), return_when=asyncio.FIRST_COMPLETED)
            finally:
                watch.cancel()
                done.cancel()
        return DISCONNECT

    async def _read(self) -> dict[str, Any]:
        left = self.left
        if left == 0:
            self.more = False
            return {"type": "http.request", "body": b"", "more_body": False}
        try:
            chunk = await self.stream.get_next_chunk()
        except ProtocolError as exc:  # a body too large (413) or badly framed (400)
            self.more = False
            await self._refuse(exc.status)
            return DISCONNECT
        except ConnectionError:  # the client left mid-body
            self.more = False
            self.response.lost()
            return DISCONNECT
        if chunk is None:
            self.more = False
            return {"type": "http.request", "body": b"", "more_body": False}
        if left is not None:
            self.left = left = left - len(chunk)
            self.more = left > 0
        return {"type": "http.request", "body": chunk, "more_body": self.more}

    async def _refuse(self, status: int) -> None:
        """A request error while reading the body: it is answered here with its status, and
        the application, told ``http.disconnect``, can send nothing more."""
        response = self.response
        if not response.sent:
            await answer(self.stream, status)
        response.lost()

    async def send(self, message: dict[str, Any]) -> None:
        """Take one ``http.response.*`` message.

        Raises:
            ClientDisconnected: the client went away (an ``OSError``).
            RuntimeError: a message out of order, or after the response was complete.
        """
        kind = message["type"]
        response = self.response
        phase = response.phase
        if phase == BODY and kind == "http.response.body":
            await response.body(message)
        elif phase == START and kind == "http.response.start":
            response.start(message)
        elif phase == BODY and kind == "http.response.pathsend":
            await response.pathsend(message)
        elif phase == TRAILERS and kind == "http.response.trailers":
            await response.trailer(message)
        elif response.gone:
            raise ClientDisconnected(f"{kind!r} after the client went away")
        elif phase == DONE:
            raise RuntimeError(f"unexpected ASGI message {kind!r} after the response completed")
        else:
            expected = ("http.response.start", "http.response.body", "http.response.trailers")
            raise RuntimeError(f"expected ASGI message {expected[phase]!r}, got {kind!r}")


def _body_length(stream: Any) -> int | None:
    """The request body's length when the head says it: ``content-length``, or none at all
    on HTTP/1 without ``transfer-encoding`` (RFC 9112 section 6.3 item 7)."""
    req = stream.request_headers
    length = req.get("content-length")
    if length is not None:
        return int(length) if length.isdigit() else None
    if stream.peer_version < 2 and not req.has("transfer-encoding"):
        return 0
    return None
