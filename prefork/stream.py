"""The stream contract: one request/response exchange, the same for every HTTP version.

A protocol's stream class implements the primitives (``get_headers``, ``_read_chunk``,
``write_headers``, ``write_chunk``, ``write_continue``, ``shutdown``, ``peername``,
``localname``, ``checktls``); the body helpers here are written once on top of them, as in
lua-http's ``stream_common``. docs/stream.md is the written contract.

Every I/O method is a coroutine taking ``timeout`` (seconds, None for no limit); on expiry it
raises ``TimeoutError``. Reading past the end of the body returns None, as lua-http returns nil.
"""

from __future__ import annotations

import abc
import asyncio
import re
import socket
from typing import IO, Any

from prefork.errors import ProtocolError
from prefork.headers import Headers

_BLOCK = 65536
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}  # of a forwarded client's address


class _Forever:
    """An ``async with`` that bounds nothing."""

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, *exc: object) -> None:
        pass


_FOREVER = _Forever()


def within(seconds: float | None) -> Any:
    """``asyncio.timeout(seconds)``, or a context that does nothing when ``seconds`` is None:
    entering ``asyncio.timeout`` looks up the current task, a ``getpid()`` system call on
    Python 3.11, which a method called with no timeout (the usual case) need not pay."""
    return _FOREVER if seconds is None else asyncio.timeout(seconds)


class Stream(abc.ABC):
    """Base class of HTTP/1 and HTTP/2 streams (server side)."""

    connection: Any
    peer_version: float
    #: The request headers (pseudo-headers first), for logs and adapters; reading them does
    #: not consume anything (``get_headers()`` still returns them first).
    request_headers: Headers
    #: The final status written (None before the response head), for access logs.
    status: int | None
    #: Response body bytes written so far.
    bytes_sent: int
    #: What trusted proxies said of the request (``prefork.protocol.forwarded.Forwarded``:
    #: the client, scheme and authority, and the received ``:scheme``/``:authority``), set
    #: by the server before the handler runs; None when they said nothing (docs/stream.md).
    forwarded: Any = None
    #: True once the client has gone away (see :meth:`wait_disconnected`).

    # Class defaults, set on the instance when they change: a stream is made per request.
    _gone: asyncio.Future[None] | None = None  # made by the first wait_disconnected()
    _task: Any = None  # the task running onstream for it (set by prefork.hosting.Host)
    disconnected = False  # set on the instance when the client goes
    _unget: list[bytes] | None = None  # a list once unget() is called
    _waiter: asyncio.Future[None] | None = None  # while a reader waits for the connection

    # -- waiting for the connection ------------------------------------------------------------

    def _disconnect(self) -> None:
        """The client is gone (connection lost, stream reset): readers and watchers go on."""
        self.disconnected = True
        gone = self._gone
        if gone is not None and not gone.done():
            gone.set_result(None)
        self._wake()

    async def wait_disconnected(self) -> None:
        """Return once the client has gone away: its connection closed or, on HTTP/2, its
        stream reset (also when that happened before the call). Cancel it to stop watching.

        For applications that must notice a client leaving while they are not reading (an
        ASGI ``http.disconnect``, a long poll); ``disconnected`` tells it without waiting.
        """
        if self.disconnected:
            return
        if self._gone is None:
            self._gone = self.connection.loop.create_future()
        await asyncio.shield(self._gone)

    def _wake(self) -> None:
        """The connection fed the stream (data, end, error): a waiting reader goes on."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        """Wait for the next :meth:`_wake` (TimeoutError after ``timeout`` seconds)."""
        waiter = self._waiter = self.connection.loop.create_future()
        try:
            if timeout is None:
                await waiter
            else:
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            self._waiter = None

    # -- primitives, provided by each protocol ------------------------------------------------

    @abc.abstractmethod
    async def get_headers(self, timeout: float | None = None) -> Headers | None:
        """The request headers; then the trailers (if any); then None."""

    @abc.abstractmethod
    async def _read_chunk(self, timeout: float | None) -> bytes | None:
        """The next body bytes the protocol received, None at the end of the body."""

    @abc.abstractmethod
    async def write_headers(
        self, headers: Headers, end_stream: bool, timeout: float | None = None
    ) -> None:
        """Send a response head (or informational 1xx, or trailers after the body)."""

    @abc.abstractmethod
    async def write_chunk(
        self, data: bytes, end_stream: bool, timeout: float | None = None
    ) -> None:
        """Send a piece of the response body; ``end_stream`` finishes the response."""

    @abc.abstractmethod
    async def shutdown(self, timeout: float | None = None) -> None:
        """End the exchange: the server's status if nothing was written, else cut it off."""

    @abc.abstractmethod
    def _end(self, status: int) -> None:
        """The handler returned (``status`` 503) or raised (500): answer ``status`` if no
        response was started, cut an unfinished one off, or do nothing if it is complete.
        Called by the server (``prefork.hosting``), part of the contract between the two."""

    # -- the connection ---------------------------------------------------------------------------

    def peername(self) -> tuple:
        """The client's address: ``(family, address, port)`` or ``(AF_UNIX, path)``.

        The client a trusted proxy named (:attr:`forwarded`) when there is one: its family is
        ``AF_UNSPEC`` for a name that is no address (``unknown``, ``_hidden``), its port 0
        when not given. ``stream.connection.peername()`` is the connection's own peer.
        """
        fwd = self.forwarded
        if fwd is None or fwd.client is None:
            return self.connection.peername()
        return (_FAMILIES.get(fwd.version, socket.AF_UNSPEC), fwd.client, fwd.port)

    def localname(self) -> tuple:
        """This end's address: ``(family, address, port)`` or ``(AF_UNIX, path)``."""
        return self.connection.localname()

    def checktls(self) -> Any:
        """The TLS connection object (``OpenSSL.SSL.Connection``), None on plain connections."""
        return self.connection.checktls()

    # -- reading ---------------------------------------------------------------------------------

    async def get_next_chunk(self, timeout: float | None = None) -> bytes | None:
        """The next piece of the request body, or None at its end.

        Raises:
            TimeoutError: nothing arrived within ``timeout``.
            ConnectionResetError: the client went away before the body was complete.
        """
        if self._unget:
            return self._unget.pop()
        return await self._read_chunk(timeout)

    def unget(self, data: bytes) -> None:
        """Put ``data`` back in front of the body: the next read returns it first."""
        if data:
            if self._unget is None:
                self._unget = []
            self._unget.append(bytes(data))

    async def get_body_as_string(self, timeout: float | None = None) -> bytes:
        """The whole (rest of the) request body as bytes (lua-http's name, Python's type).

        Raises:
            ProtocolError: (413) the body is larger than the server's ``max_buffered_body``;
                a handler that lets it pass answers 413. Stream bigger bodies with
                :meth:`get_next_chunk` or :meth:`save_body_to_file`.
        """
        async with within(timeout):
            parts = []
            size = 0
            while (chunk := await self.get_next_chunk()) is not None:
                parts.append(chunk)
                size += len(chunk)
                self._check_buffered(size)
        return b"".join(parts)

    def _check_buffered(self, size: int) -> None:
        limit = self.connection.max_buffered_body
        if limit is not None and size > limit:
            raise ProtocolError(f"request body over {limit} bytes cannot be buffered", 413)

    async def get_body_chars(self, n: int, timeout: float | None = None) -> bytes | None:
        """Exactly ``n`` bytes of body, fewer at its end, None when nothing is left."""
        if n < 0:
            raise ValueError("n must be >= 0")
        parts: list[bytes] = []
        have = 0
        async with within(timeout):
            while have < n:
                chunk = await self.get_next_chunk()
                if chunk is None:
                    break
                parts.append(chunk)
                have += len(chunk)
        data = b"".join(parts)
        if len(data) > n:
            self.unget(data[n:])
            data = data[:n]
        return data if data or n == 0 else None

    async def get_body_until(
        self,
        pattern: bytes,
        plain: bool = True,
        include_pattern: bool = False,
        timeout: float | None = None,
    ) -> bytes | None:
        """Body up to ``pattern`` (a literal, or a ``re`` bytes pattern when ``plain`` is False).

        What follows the pattern stays for the next read. At the end of the body without a
        match, returns what was left (None if nothing was).

        Raises:
            ProtocolError: (413) more than ``max_buffered_body`` bytes without a match.
        """
        buf = bytearray()
        regex = None if plain else re.compile(pattern)
        start = 0  # a literal cannot match before here: the buffer is searched once
        async with within(timeout):
            while True:
                if regex is None:
                    at = buf.find(pattern, start)
                    span = (at, at + len(pattern)) if at >= 0 else None
                    start = max(0, len(buf) - len(pattern) + 1)
                else:
                    found = regex.search(buf)
                    span = found.span() if found else None
                if span is not None:
                    self.unget(bytes(buf[span[1] :]))
                    return bytes(buf[: span[1] if include_pattern else span[0]])
                chunk = await self.get_next_chunk()
                if chunk is None:
                    return bytes(buf) or None
                buf += chunk
                self._check_buffered(len(buf))

    async def save_body_to_file(self, file: IO[bytes], timeout: float | None = None) -> None:
        """Write the rest of the request body to ``file`` (a binary file object)."""
        async with within(timeout):
            while (chunk := await self.get_next_chunk()) is not None:
                file.write(chunk)

    async def get_body_as_file(self, timeout: float | None = None) -> IO[bytes]:
        """The rest of the body in an anonymous temporary file, positioned at its start."""
        import tempfile  # on first use: most workers never need it

        file = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
        try:
            await self.save_body_to_file(file, timeout)
        except BaseException:
            file.close()
            raise
        file.seek(0)
        return file

    # -- writing ---------------------------------------------------------------------------------

    async def write_body_from_string(self, data: bytes, timeout: float | None = None) -> None:
        """Send ``data`` as the rest of the body and finish the response."""
        await self.write_chunk(data, True, timeout)

    async def write_body_from_file(
        self, file: IO[bytes], count: int | None = None, timeout: float | None = None
    ) -> None:
        """Send ``count`` bytes (None: to the end) of ``file`` from its position, then finish."""
        async with within(timeout):
            left = count
            while left is None or left > 0:
                data = file.read(_BLOCK if left is None else min(_BLOCK, left))
                if not data:
                    if left:
                        raise EOFError(f"file ended {left} bytes before count")
                    break
                if left is not None:
                    left -= len(data)
                await self.write_chunk(data, False)
            await self.write_chunk(b"", True)
