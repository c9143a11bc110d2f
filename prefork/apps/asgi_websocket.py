"""The ASGI WebSocket cycle on :mod:`prefork.websocket` (HTTP/1.1 and HTTP/2, RFC 8441).

The handshake has been checked (``websocket.new_from_stream``) before the application runs.
``websocket.accept`` answers it (``101``, or ``200`` over HTTP/2) and hands the connection to
the WebSocket; ``websocket.close`` before that refuses it with ``403``; the
``websocket.http.response`` extension refuses it with a response of the application's own,
written like any HTTP response (:class:`~prefork.apps.asgi_response.Response`). Messages,
Pings, Close frames, permessage-deflate and the message size limit are prefork.websocket's.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from prefork import websocket
from prefork.apps.asgi_response import DONE, Response, answer
from prefork.apps.asgi_scope import ClientDisconnected, log
from prefork.headers import Headers

CONNECTING, ACCEPTED, RESPONDING, CLOSED = range(4)
ABNORMAL = 1006  # RFC 6455 section 7.1.5: closed without a Close frame


class WebSocketCycle:
    """One WebSocket's ``receive`` and ``send`` (ASGI WebSocket, spec 2.4).

    Attributes:
        ws: the :class:`prefork.websocket.WebSocket` (accepted by ``websocket.accept``).
        state: CONNECTING, ACCEPTED, RESPONDING (the ``websocket.http.response`` extension)
            or CLOSED.
    """

    def __init__(self, stream: Any, ws: websocket.WebSocket) -> None:
        self.stream = stream
        self.ws = ws
        self.state = CONNECTING
        self.connected = False  # websocket.connect was delivered
        self.code = ABNORMAL  # the close code websocket.disconnect reports once closed
        self.response: Response | None = None
        self._settled: asyncio.Future[None] | None = None  # out of CONNECTING

    # -- receive ---------------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """``websocket.connect`` first, then each message as ``websocket.receive``, then
        ``websocket.disconnect`` with the close code (the peer's, when it closed first)."""
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        if self.state == CONNECTING:
            await self._wait_settled()
        if self.state != ACCEPTED:
            return {"type": "websocket.disconnect", "code": self.code, "reason": ""}
        try:
            data = await self.ws.receive()
        except websocket.ConnectionClosed as exc:
            self.state = CLOSED
            self.code = exc.code
            return {"type": "websocket.disconnect", "code": exc.code, "reason": exc.reason}
        if isinstance(data, str):
            return {"type": "websocket.receive", "text": data}
        return {"type": "websocket.receive", "bytes": data}

    async def _wait_settled(self) -> None:
        """Before the application answers the handshake: wait for that answer (from another
        task) or for the client to leave."""
        if self._settled is None:
            self._settled = asyncio.get_running_loop().create_future()
        watch = asyncio.ensure_future(self.stream.wait_disconnected())
        try:
            await asyncio.wait((watch, self._settled), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if self.state == CONNECTING:  # the client left before an answer
            self._settle(CLOSED)

    def _settle(self, state: int) -> None:
        self.state = state
        settled = self._settled
        if settled is not None and not settled.done():
            settled.set_result(None)

    # -- send ------------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Take one ``websocket.*`` message.

        Raises:
            ClientDisconnected: the WebSocket is closed or the client went away (an OSError).
            RuntimeError: a message that does not fit the state.
            ValueError: a close code that may not be sent (RFC 6455 section 7.4).
        """
        kind = message["type"]
        state = self.state
        if state == ACCEPTED and kind == "websocket.send":
            await self._send_message(message)
        elif state == CONNECTING and kind == "websocket.accept":
            await self._accept(message)
        elif state == ACCEPTED and kind == "websocket.close":
            await self._close(message)
        elif state == CONNECTING and kind == "websocket.close":
            self._settle(CLOSED)  # RFC 6455 section 4.2.2: refused, here with 403 Forbidden
            await answer(self.stream, 403)
        elif state == CONNECTING and kind == "websocket.http.response.start":
            self.response = Response(self.stream, "GET")
            self.response.start(message)
            self._settle(RESPONDING)
        elif state == RESPONDING and kind == "websocket.http.response.body":
            await self._respond(message)
        elif state == CLOSED:
            raise ClientDisconnected(f"{kind!r} on a closed WebSocket")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in WebSocket state {state}")

    async def _accept(self, message: dict[str, Any]) -> None:
        subprotocol = message.get("subprotocol")
        headers = Headers((name, value) for name, value in message.get("headers") or ())
        try:
            await self.ws.accept(protocols=[subprotocol] if subprotocol else [], headers=headers)
        except websocket.ConnectionClosed as exc:
            self._settle(CLOSED)
            raise ClientDisconnected(str(exc)) from exc
        self._settle(ACCEPTED)

    async def _send_message(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        data = text if text is not None else message.get("bytes")
        if data is None:
            raise RuntimeError("websocket.send needs 'bytes' or 'text'")
        try:
            await self.ws.send(data)
        except websocket.ConnectionClosed as exc:
            self.state = CLOSED
            self.code = exc.code
            raise ClientDisconnected(str(exc)) from exc

    async def _close(self, message: dict[str, Any]) -> None:
        code = message.get("code") or 1000
        # waits for the client's Close (at most close_timeout); ValueError: a code not to send
        await self.ws.close(code, message.get("reason") or "")
        self.state = CLOSED
        self.code = code

    async def _respond(self, message: dict[str, Any]) -> None:
        response = self.response
        assert response is not None
        try:
            await response.body({**message, "type": "http.response.body"})
        finally:
            if response.phase == DONE:
                self.state = CLOSED

    # -- the end ---------------------------------------------------------------------------------

    async def failed(self) -> None:
        """The application raised: an accepted WebSocket closes with 1011 (internal error);
        before that the server answers 500 (or cuts a started denial response off)."""
        if self.state == ACCEPTED:
            self.state = CLOSED
            with contextlib.suppress(Exception):
                await self.ws.close(1011)

    async def returned(self, line: tuple[str, str]) -> None:
        """The application returned: close an open WebSocket with 1000; answer 500 (and log)
        a handshake it left unanswered."""
        if self.state == ACCEPTED:
            self.state = CLOSED
            await self.ws.close(1000)
            return
        response = self.response
        if self.state == CONNECTING or (response is not None and not response.sent):
            self.state = CLOSED
            if not self.stream.disconnected:
                log.error("ASGI callable returned without answering the WebSocket: %s %s", *line)
                await answer(self.stream, 500)
        elif response is not None and response.phase != DONE:
            log.error("ASGI callable returned without completing response: %s %s", *line)
