"""WSGI (PEP 3333) as an adapter on the stream contract (docs/stream.md, docs/wsgi.md).

:func:`onstream` turns a WSGI application into an ``async def onstream(server, stream)``. The
handler builds the environ on the loop, then runs the application in a bounded pool of
threads (:class:`~prefork.apps.wsgi_io.Pool`), never on the loop. The application's thread
reaches the stream only through a :class:`~prefork.apps.wsgi_io.Bridge`, which runs one
stream coroutine at a time on the loop:

* ``wsgi.input`` asks for the next body chunk when the application reads, so the stream's own
  back-pressure holds the rest of an upload in the client;
* each body chunk the application yields (or passes to ``write()``) is written while it makes
  the next, which waits until that write is done: the thread waits while the transport is
  paused, so a client that does not read holds up its own application thread, nothing else.

What the loop can write in one step after the thread returns, it does: a response known in
full (a list or tuple, the usual case) with its head, and the chunk that completes the
``Content-Length`` with the end of the response (the one chunk of most framework responses).
The handler then ends the response: it answers ``500`` for an application error that came
before the head, cuts the response off (HTTP/1 closes, HTTP/2 resets the stream) for one that
came after it, and logs the traceback either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from prefork.apps.wsgi_environ import base_environ, clean_root_path, environ, response_head
from prefork.apps.wsgi_io import Bridge, FileWrapper, Input, Pool
from prefork.errors import ProtocolError
from prefork.headers import Headers
from prefork.stream import Stream

__all__ = ["FileWrapper", "onstream"]

log = logging.getLogger("prefork.wsgi")

#: The client went away (or the handler was cancelled): nothing to report, nothing to answer.
GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def onstream(
    app: Callable[..., Any],
    *,
    threads: int = 8,
    root_path: str = "",
    input_timeout: float | None = 30.0,
) -> Callable[[Any, Stream], Any]:
    """The ``onstream`` handler that serves the WSGI application ``app``.

    Args:
        app: a PEP 3333 application, ``app(environ, start_response) -> iterable of bytes``.
        threads: the most requests of this process that run ``app`` at once (each in a thread
            of its own); more wait for a free thread.
        root_path: the path the application is mounted at behind a proxy: SCRIPT_NAME, and
            removed from the front of PATH_INFO when it is there.
        input_timeout: seconds a ``wsgi.input`` read waits for body bytes before it raises
            ``ProtocolError`` with status 408 (the client gets a 408 if no response began);
            None waits as long as the client stays.

    Returns:
        ``async def onstream(server, stream)``, for ``prefork.server.listen(onstream=...)``.

    Raises:
        TypeError: ``app`` is not callable. ValueError: ``threads < 1``, or a ``root_path``
            that does not start with ``/``.
    """
    if not callable(app):
        raise TypeError(f"a WSGI application must be callable, not {type(app).__name__}")
    pool = Pool(threads)
    base = base_environ(clean_root_path(root_path), FileWrapper)

    async def handler(server: Any, stream: Stream) -> None:
        loop = stream.connection.loop  # not get_running_loop(): a getpid() call on 3.11
        bridge = Bridge(loop)
        env = environ(base, stream)
        env["wsgi.input"] = Input(stream, bridge, input_timeout)
        call = Call(app, env, stream, bridge)
        try:
            await pool.submit(call.run, loop)
        except asyncio.CancelledError:
            bridge.close()  # the thread's next stream call fails; it goes on to close()
            raise
        await finish(stream, call)

    handler.wsgi_app = app  # type: ignore[attr-defined]
    return handler


class Call:
    """One request's run of the application, in a pool thread (PEP 3333's server side)."""

    def __init__(
        self, app: Callable[..., Any], env: dict[str, Any], stream: Stream, bridge: Bridge
    ) -> None:
        self.app = app
        self.env = env
        self.stream = stream
        self.bridge = bridge
        self.head: Headers | None = None  # from start_response
        self.sent = False  # the head went to the stream (it cannot be replaced any more)
        self.body: list[bytes] = []  # left for the loop to write with the end of the response
        self.left: int | None = None  # body bytes the content-length still allows
        self.done = False  # the response is complete (a file went out whole)
        self.error: BaseException | None = None
        self.is_head = env["REQUEST_METHOD"] == "HEAD"

    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Callable:
        """PEP 3333 ``start_response``: returns the ``write`` callable.

        Raises:
            the exception of ``exc_info`` when the head was already sent; RuntimeError when
            called a second time without ``exc_info``; TypeError/ValueError for a bad status
            or field (see :func:`~prefork.apps.wsgi_environ.response_head`).
        """
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no cycle through the traceback's frames
        elif self.head is not None:
            raise RuntimeError("start_response() called a second time without exc_info")
        self.head = head = response_head(status, headers)
        length = head.get("content-length")
        self.left = None if length is None else int(length)
        self.body = []  # a chunk held back from a replaced response
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable: ``data`` is on its way when it returns."""
        self.send(data)

    def send(self, data: Any) -> None:
        """Write one body chunk, the head first if it is not sent yet (PEP 3333: not before
        the first non-empty chunk)."""
        data = _bytes(data)
        if self.head is None:
            raise RuntimeError("the application sent body data before calling start_response()")
        if not data:
            return
        left = self.left
        if left is not None:
            if self.body or len(data) > left:
                raise ValueError("the application sent more than its content-length")
            self.left = left - len(data)
            if not self.left:  # the last chunk: it goes with the end, in one step on the loop
                self.body.append(data)
                return
        if self.sent:
            self.bridge.start(self.stream.write_chunk(data, False))
        else:
            self.sent = True
            self.bridge.start(_start(self.stream, self.head, data))

    def run(self) -> None:
        """Call the application and send what it returns; ``close()`` it in every case."""
        try:
            result = self.app(self.env, self.start_response)
            try:
                self.respond(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # the thread's edge: the loop answers or cuts off
            self.error = exc
            if not isinstance(exc, (*GONE, ProtocolError)):
                log.error("WSGI application failed on %s %s", *_request(self), exc_info=exc)

    def respond(self, result: Any) -> None:
        if type(result) in (list, tuple):  # known in full: the loop writes it with the head
            if self.head is None:
                raise RuntimeError("the application returned without calling start_response()")
            body = [_bytes(data) for data in result]
            size = sum(map(len, body))
            left = self.left
            if left is not None and size != left and (size or not self.is_head):
                raise ValueError(f"the body has {size} bytes where content-length wants {left}")
            self.body += body
            # the length of a HEAD response is the GET body's: an empty list tells nothing
            if left is None and not self.sent and (size or not self.is_head):
                self.head.append("content-length", str(size))
            return
        if isinstance(result, FileWrapper) and self.sendfile(result):
            return
        for data in result:
            self.send(data)
        if self.head is None:
            raise RuntimeError("the application returned without calling start_response()")

    def sendfile(self, wrapper: FileWrapper) -> bool:
        """Send a regular file with ``stream.write_body_from_file`` (``sendfile(2)`` on plain
        HTTP/1); False when that does not apply (then the wrapper is iterated)."""
        stream, head, file = self.stream, self.head, wrapper.filelike
        if head is None or self.sent or stream.peer_version >= 2 or stream.checktls() is not None:
            return False
        try:
            offset = file.tell()
            info = os.fstat(file.fileno())
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        left = info.st_size - offset
        length = head.get("content-length")
        if length is None:
            head.append("content-length", str(left))
        elif int(length) > left:
            raise ValueError(f"content-length is {length} but the file has {left} bytes left")
        self.sent = True
        self.bridge.call(_send_file(stream, head, file, None if length is None else int(length)))
        self.done = True
        return True


def _bytes(data: Any) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"a WSGI application must yield bytes, not {type(data).__name__}")


async def _start(stream: Stream, head: Headers, data: bytes) -> None:
    await stream.write_headers(head, False)
    await stream.write_chunk(data, False)


async def _send_file(stream: Stream, head: Headers, file: Any, count: int | None) -> None:
    await stream.write_headers(head, False)
    await stream.write_body_from_file(file, count)


async def finish(stream: Stream, call: Call) -> None:
    """(On the loop, after the thread) wait for the last chunk the thread started, then end
    the response, or answer an error (500, a request error's status) or cut the response off."""
    try:
        error = await _last_write(call)
        if error is None and not call.done:
            if not call.sent:
                await stream.write_headers(call.head, False)  # type: ignore[arg-type]
            await stream.write_chunk(b"".join(call.body), True)
            return
    except GONE:
        return  # the server closes or resets what is left
    except ValueError as exc:  # the body did not match the application's content-length
        log.error("WSGI response cut off on %s %s: %s", *_request(call), exc)
        error = exc
    if error is None:
        return
    if stream.status is None and not isinstance(error, GONE):
        status = error.status if isinstance(error, ProtocolError) else 500
        try:
            await _error_response(stream, status)
            return
        except GONE:
            pass
    await _shutdown(stream)


async def _last_write(call: Call) -> BaseException | None:
    """The application's error, once the write it left in flight is done (which raises)."""
    pending, call.bridge.pending = call.bridge.pending, None
    if pending is not None:
        try:
            if pending.done():  # usually: the loop wrote it before the thread's end came
                pending.result()
            else:
                await asyncio.wrap_future(pending)
        except (*GONE, ValueError):
            raise
        except Exception as exc:  # StreamStateError: the error path below decides
            return call.error or exc
    return call.error


def _request(call: Call) -> tuple[str, str]:
    return call.env["REQUEST_METHOD"], call.env["RAW_URI"]


async def _shutdown(stream: Any) -> None:
    # docs/stream.md lists shutdown() and both streams have it; prefork.stream.Stream does not
    # declare it (hence Any)
    await stream.shutdown()


async def _error_response(stream: Stream, status: int) -> None:
    body = f"{status} {HTTPStatus(status).phrase}\n".encode()
    head = Headers()
    head.append(":status", str(status))
    head.append("content-type", "text/plain; charset=utf-8")
    head.append("content-length", str(len(body)))
    if status != 500:  # the request's body broke off (400, 408, 413): the connection ends
        head.append("connection", "close")
    await stream.write_headers(head, False)
    await stream.write_chunk(body, True)
