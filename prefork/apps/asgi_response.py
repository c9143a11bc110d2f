"""The response half of an ASGI cycle: ``http.response.*`` messages written to a stream.

Also the denial response of a WebSocket (``websocket.http.response.*``, the same messages
under other names). Each message leaves when it is sent: ``write_headers`` and
``write_chunk`` wait only while the connection's send buffer is full (docs/stream.md,
"Back-pressure"), so a streaming application is slowed down by a slow client instead of
filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from http import HTTPStatus
from typing import Any

from prefork.apps.asgi_scope import ClientDisconnected, response_head, status_has_body
from prefork.headers import Headers

START, BODY, TRAILERS, DONE = range(4)  # what the response expects next


class Response:
    """Writes one response from ASGI messages: a start, body pieces, maybe trailers.

    The head is held until the first body message, as ASGI requires (an application may still
    fail between the two, and then gets a clean 500). A body sent whole, in one message, gets a
    ``content-length``, so an HTTP/1.1 client sees no chunked framing.

    Attributes:
        phase: START, BODY, TRAILERS or DONE.
        sent: whether anything was written to the stream.
        gone: the client went away: later messages raise :class:`ClientDisconnected`.
    """

    __slots__ = ("_done", "gone", "head", "method", "phase", "sent", "status", "stream", "trailers")

    def __init__(self, stream: Any, method: str | None) -> None:
        self.stream = stream
        self.method = method
        self.phase = START
        self.sent = False
        self.gone = False
        self.head: Headers | None = None
        self.status = 0
        self.trailers: Headers | None = None  # collected when start asked for trailers
        self._done: asyncio.Future[None] | None = None

    def start(self, message: dict[str, Any]) -> None:
        """``http.response.start``: status, headers, and the ``trailers`` flag (held)."""
        self.head = response_head(message["status"], message.get("headers", ()))
        self.status = int(message["status"])
        if message.get("trailers", False):
            self.trailers = Headers()
        self.phase = BODY

    async def body(self, message: dict[str, Any]) -> None:
        """``http.response.body``: a piece of the body; the last one (``more_body`` false)
        ends the response, unless trailers are to follow."""
        body = message.get("body", b"")
        more = message.get("more_body", False)
        end = not more and self.trailers is None
        try:
            head = self.head
            if head is not None:
                if end and self._may_set_length(head, body):
                    head.append("content-length", str(len(body)))
                await self._write_head(head)
            if body or end:
                await self.stream.write_chunk(body, end)
        except ConnectionError as exc:
            raise self.lost(exc) from exc
        if not more:
            if end:
                self.finish()
            else:
                self.phase = TRAILERS

    async def pathsend(self, message: dict[str, Any]) -> None:
        """``http.response.pathsend``: the file at ``path`` is the rest of the body, sent with
        ``write_body_from_file`` (``sendfile(2)`` on a plain connection); ends the response."""
        with open(message["path"], "rb") as file:
            try:
                head = self.head
                if head is not None:
                    if not head.has("content-length") and status_has_body(self.status):
                        head.append("content-length", str(os.fstat(file.fileno()).st_size))
                    await self._write_head(head)
                if self.method != "HEAD" and status_has_body(self.status):
                    await self.stream.write_body_from_file(file)
                else:  # HEAD, 204, 304: no need to read the file at all
                    await self.stream.write_chunk(b"", True)
            except ConnectionError as exc:
                raise self.lost(exc) from exc
        self.finish()

    async def trailer(self, message: dict[str, Any]) -> None:
        """``http.response.trailers``: fields of the trailer section; the last message
        (``more_trailers`` false) sends them and ends the response. The stream drops them
        where the framing has no room (HTTP/1 with a content-length, HTTP/1.0)."""
        trailers = self.trailers
        assert trailers is not None
        for name, value in message.get("headers", ()):
            trailers.append(name, value)
        if message.get("more_trailers", False):
            return
        try:
            await self.stream.write_headers(trailers, True)
        except ConnectionError as exc:
            raise self.lost(exc) from exc
        self.finish()

    def _may_set_length(self, head: Headers, body: bytes) -> bool:
        """A whole body's length can go in the head: unless the application gave one, or the
        status has no body, or this answers HEAD with no body (the GET's length is unknown)."""
        if head.has("content-length") or not status_has_body(self.status):
            return False
        return bool(body) or self.method != "HEAD"

    async def _write_head(self, head: Headers) -> None:
        self.head = None
        self.sent = True
        await self.stream.write_headers(head, False)

    def finish(self) -> None:
        """The response is complete (or abandoned): wake :meth:`wait_done`."""
        self.phase = DONE
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    def lost(self, exc: BaseException | None = None) -> ClientDisconnected:
        """The client went away: no more writes. Returns the exception for ``send()``."""
        self.gone = True
        self.finish()
        return ClientDisconnected(str(exc) if exc else "the client went away")

    async def wait_done(self) -> None:
        """Return once the response is complete (at once if it is)."""
        if self.phase == DONE:
            return
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._done)


async def answer(stream: Any, status: int) -> None:
    """A short plain-text response (the reason phrase), for errors the adapter answers itself;
    nothing happens if the client is gone."""
    body = f"{HTTPStatus(status).phrase}\n".encode("ascii")
    head = Headers()
    head.append(":status", str(status))
    head.append("content-type", "text/plain; charset=utf-8")
    head.append("content-length", str(len(body)))
    with contextlib.suppress(ConnectionError):
        await stream.write_headers(head, False)
        await stream.write_chunk(body, True)
