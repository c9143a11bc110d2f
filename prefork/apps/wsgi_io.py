"""The WSGI adapter's threads and the bridge between them and the event loop.

* :class:`Pool`: at most ``size`` daemon threads per process that run the application. They are
  started on demand and made anew after a fork; daemon threads, so that a thread stuck on a
  loop that stopped for good cannot hold the interpreter at exit (``ThreadPoolExecutor``
  joins its threads then).
* :class:`Bridge`: runs one stream coroutine at a time on the loop for an application thread:
  one chunk in flight between the two threads, which is the back-pressure in both directions.
* :class:`Input`: ``wsgi.input``, a file-like object reading the request body chunk by chunk
  through the bridge; it keeps only the chunk being read.
* :class:`FileWrapper`: ``wsgi.file_wrapper`` (PEP 3333, "Optional Platform-Specific File
  Handling").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from prefork.errors import ProtocolError
from prefork.stream import Stream

Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class Pool:
    """A bounded pool of daemon threads, safe to carry across ``fork()`` (see module doc).

    Args:
        size: the most threads it runs at once; more jobs wait in submission order.
        name: the threads' name prefix.
    """

    def __init__(self, size: int, name: str = "prefork-wsgi") -> None:
        if size < 1:
            raise ValueError(f"threads must be at least 1, got {size}")
        self.size = size
        self.name = name
        self._reset()
        os.register_at_fork(after_in_child=_after_fork(weakref.ref(self)))

    def _reset(self) -> None:
        # also in a forked child: the parent's threads, and a lock one of them held, stay behind
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._threads = 0
        self._idle = 0  # threads waiting for a job
        self._queued = 0  # jobs no thread has taken yet

    def submit(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """Run ``fn()`` in a thread; the returned future (of ``loop``) gets its result."""
        future = loop.create_future()
        with self._lock:
            self._queued += 1
            if self._queued > self._idle and self._threads < self.size:
                self._threads += 1
                self._idle += 1
                name = f"{self.name}-{self._threads}"
                threading.Thread(
                    target=self._work, args=(self._jobs,), name=name, daemon=True
                ).start()
            self._jobs.put((fn, loop, future))
        return future

    def _work(self, jobs: queue.SimpleQueue[Job]) -> None:
        while True:
            fn, loop, future = jobs.get()
            with self._lock:
                self._queued -= 1
                self._idle -= 1
            try:
                outcome: tuple[Any, BaseException | None] = (fn(), None)
            except BaseException as exc:  # handed to the loop, which raises it in the handler
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
                loop.call_soon_threadsafe(_settle, future, *outcome)
            del fn, loop, future, outcome  # an idle thread keeps no request (or traceback) alive
            with self._lock:
                self._idle += 1


def _after_fork(ref: weakref.ref[Pool]) -> Callable[[], None]:
    def reset() -> None:
        pool = ref()
        if pool is not None:
            pool._reset()

    return reset


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # the handler was cancelled
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


class Bridge:
    """Runs stream coroutines on the loop for one application thread, one at a time.

    :meth:`start` does not wait for its coroutine (a response chunk is written while the
    application makes the next one), but a coroutine starts only once the previous one has
    finished: one operation in flight, so a paused transport holds the thread at its next
    chunk. The last one started is :attr:`pending` until someone waits for it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False
        self.pending: concurrent.futures.Future[Any] | None = None

    def start(self, coro: Coroutine[Any, Any, Any]) -> None:
        """(In the application's thread) wait for the previous coroutine, then start ``coro``.

        Raises:
            ConnectionAbortedError: the handler was cancelled, or the loop is closed.
            Exception: what the previous coroutine raised (``coro`` is then not started).
        """
        try:
            self.wait()
        except BaseException:
            coro.close()
            raise
        if self.closed:
            coro.close()
            raise ConnectionAbortedError("the server stopped serving this request")
        try:
            pending = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed
            coro.close()
            raise ConnectionAbortedError("the server's event loop is closed") from None
        self.pending = pending
        if self.closed:  # close() ran between the check and now
            pending.cancel()

    def wait(self) -> Any:
        """(In the application's thread) the result of the coroutine started last, if any.

        Raises:
            ConnectionAbortedError: it was cancelled. Exception: what it raised.
        """
        pending = self.pending
        if pending is None:
            return None
        try:
            return pending.result()
        except concurrent.futures.CancelledError:
            raise ConnectionAbortedError("the server stopped serving this request") from None
        finally:
            self.pending = None

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """:meth:`start` ``coro`` and :meth:`wait` for its result."""
        self.start(coro)
        return self.wait()

    def close(self) -> None:
        """(On the loop) the handler is cancelled: the waiting call and later ones fail."""
        self.closed = True
        pending = self.pending
        if pending is not None:
            pending.cancel()


class Input:
    """``wsgi.input``: the request body, read from the stream one chunk at a time.

    ``read(n)`` returns ``n`` bytes unless the body ends first; ``read()`` the rest. Reading
    raises what the stream raises: ``ConnectionResetError`` (the client went away),
    ``prefork.errors.ProtocolError`` (a bad chunked body: 400, ``max_body_size``: 413), and
    ``ProtocolError`` with status 408 when no body bytes came for ``timeout`` seconds.
    """

    def __init__(self, stream: Stream, bridge: Bridge, timeout: float | None = None) -> None:
        self._stream = stream
        self._bridge = bridge
        self._timeout = timeout
        self._buf = b""
        self._pos = 0
        self._eof = False

    def _next(self) -> bytes | None:
        if self._eof:
            return None
        chunk = self._bridge.call(self._read())
        if chunk is None:
            self._eof = True
        return chunk

    async def _read(self) -> bytes | None:
        try:
            return await self._stream.get_next_chunk(self._timeout)
        except TimeoutError:
            raise ProtocolError(f"no request body data for {self._timeout} s", 408) from None

    def _fill(self) -> bool:
        """Append the next chunk to what is left of the buffer; False at the end of the body."""
        chunk = self._next()
        if chunk is None:
            return False
        self._buf = self._buf[self._pos :] + chunk if self._pos < len(self._buf) else chunk
        self._pos = 0
        return True

    def _take(self, n: int) -> bytes:
        start = self._pos
        self._pos = min(start + n, len(self._buf))
        if start == 0 and self._pos == len(self._buf):
            data, self._buf, self._pos = self._buf, b"", 0
            return data
        return self._buf[start : self._pos]

    def read(self, size: int | None = -1) -> bytes:
        """``size`` bytes of the body (fewer at its end); all the rest for ``-1``/None."""
        if size is None or size < 0:
            parts = [self._take(len(self._buf))]
            while (chunk := self._next()) is not None:
                parts.append(chunk)
            return b"".join(parts)
        while len(self._buf) - self._pos < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        """The next line, with its ``\\n``; at most ``size`` bytes when ``size >= 0``."""
        limit = -1 if size is None else size
        scanned = 0  # bytes after _pos known to hold no newline
        while True:
            end = self._buf.find(b"\n", self._pos + scanned)
            have = len(self._buf) - self._pos
            if end >= 0:
                n = end + 1 - self._pos
                break
            scanned = have
            if (0 <= limit <= have) or not self._fill():
                n = have
                break
        return self._take(n if limit < 0 else min(n, limit))

    def readlines(self, hint: int = -1) -> list[bytes]:
        """The remaining lines; stops after the line that brings the total to ``hint``."""
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class FileWrapper:
    """``wsgi.file_wrapper``: an iterable over a file, which the adapter sends with
    ``stream.write_body_from_file`` (``sendfile(2)`` on plain HTTP/1) when the file is a real
    regular file; otherwise it is read in ``blksize`` blocks. ``close()`` closes the file."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while data := read(self.blksize):
            yield data

    def close(self) -> None:
        """Close the file, if it can be closed (PEP 3333)."""
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()
