"""A worker: a prefork Server fed with connections by the master over a channel.

The worker never accepts. Batches of sockets arrive on its channel (``wire.BATCH`` with
SCM_RIGHTS); each goes to ``server.add_socket`` and the batch is acknowledged in the same loop
iteration, so a worker stuck in CPU work shows up to the master as an unacknowledged batch.
A batch the worker cannot take whole (it is closing, it would exceed ``max_concurrent``, or its
descriptors did not fit under the fd limit) is refused (``wire.REFUSE``): the master still holds
its copies and hands them to another worker.
Batches taken and connections finished are reported once per loop iteration (one ``wire.ACK``
with the closed count, or a ``wire.CLOSED`` alone) and a
heartbeat with statistics leaves every ``heartbeat`` seconds. Commands (``pause``, ``resume``,
``close``, ``reopen-logs``, ``drain``, ``undrain``) come on the control pipe; EOF on it means
the master is gone, and the worker finishes its requests and exits: no orphans.

Signals: TERM closes gracefully (like the ``close`` command), INT and QUIT exit at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import prefork.server
from prefork import logs
from prefork.aio import loop as aioloop
from prefork.process import fdpass, wire
from prefork.settings import DEFAULTS

log = logging.getLogger("prefork.worker")


class Worker:
    """Serve what a master hands over ``channel``; obey commands from ``control``.

    Args:
        onstream: the application, ``async def onstream(server, stream)``.
        channel: this worker's end of the SOCK_SEQPACKET channel.
        control: read end of the control pipe (fd), or None.
        server_options: options for ``prefork.server.new`` (no ``socket``, ``onstream``, ``cq``).
        heartbeat: seconds between heartbeats.
        access_log: log each request in the combined format to ``prefork.access``.

    Without an ``onerror`` in ``server_options``, errors are logged (:func:`log_error`) and
    the worker goes on serving: one failing request must not drop the others.
    """

    def __init__(
        self,
        onstream: Callable[..., Any],
        channel: socket.socket,
        control: int | None = None,
        *,
        server_options: dict[str, Any] | None = None,
        heartbeat: float = 1.0,
        access_log: bool = False,
        lifespan: Any = None,
    ) -> None:
        self.onstream = _with_access_log(onstream) if access_log else onstream
        self.lifespan = lifespan
        self.channel = channel
        self.control = control
        self.server_options = dict(server_options or {})
        self.server_options.setdefault("onerror", log_error)
        self.heartbeat = heartbeat
        self.server: prefork.server.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed_count = 0
        self._acks: list[int] = []  # batches taken this loop iteration, not yet acknowledged
        self._open = 0  # connections taken and not finished with: ours, as the master counts them
        self._closing = False
        self._report_scheduled = False
        self._outbox: deque[bytes] = deque()
        self._control_buf = b""
        self._beat: asyncio.TimerHandle | None = None

    def run(self) -> None:
        """Serve on a new event loop (the ``loop`` server option's kind) until closed."""
        loop = aioloop.new_loop(self.server_options.get("loop", DEFAULTS["loop"]))
        try:
            loop.run_until_complete(self.serve())
        finally:
            loop.close()

    async def serve(self) -> None:
        """Serve on the running loop until closed (for workers embedded in asyncio programs)."""
        loop = self._loop = asyncio.get_running_loop()
        server = self.server = prefork.server.new(
            cq=loop, onstream=self.onstream, **self.server_options
        )
        server.on_socket_done = self._socket_done
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._on_channel)
        if self.control is not None:
            os.set_blocking(self.control, False)
            loop.add_reader(self.control, self._on_control)
        if self.lifespan is not None:  # ASGI lifespan: no connection before startup is done
            try:
                await self.lifespan.startup()
            except Exception as exc:
                raise LifespanError(str(exc) or type(exc).__name__) from exc
        self._send(wire.READY)
        self._beat = loop.call_later(self.heartbeat, self._send_beat)
        try:
            await server.serve()
            if self.lifespan is not None:  # after the last connection
                try:
                    await self.lifespan.shutdown()
                except Exception:
                    log.exception("lifespan shutdown failed")
        finally:
            self._flush_reports()
            logs.flush_access()
            loop.remove_reader(self.channel.fileno())
            if self.control is not None:
                loop.remove_reader(self.control)
            if self._beat is not None:
                self._beat.cancel()

    def install_signal_handlers(self) -> None:
        """TERM: graceful close; INT, QUIT: exit now."""
        loop = self._loop or asyncio.get_event_loop()
        loop.add_signal_handler(signal.SIGTERM, self.close)
        for sig in (signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, _exit_now)

    def close(self) -> None:
        """Take what is already on the channel, then stop: live requests finish first."""
        if self.server is None:
            return
        self._on_channel()
        self._closing = True  # from now on a batch is refused: another worker serves it
        self.server.close()

    # -- the channel ---------------------------------------------------------------------------

    def _on_channel(self) -> None:
        server = self.server
        assert server is not None
        while True:
            try:
                data, fds = fdpass.receive(self.channel)
            except BlockingIOError:
                return
            except fdpass.TruncatedError as exc:  # at our fd limit: the batch goes back
                self._refuse_message(exc.data, "its descriptors did not fit (at the fd limit)")
                continue
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the master is gone
                self._loop.remove_reader(self.channel.fileno())  # type: ignore[union-attr]
                self._closing = True
                server.close()
                return
            self._on_message(data, fds)

    def _on_message(self, data: bytes, fds: list[int]) -> None:
        try:
            message = wire.decode(data)
        except ValueError as exc:
            _close_fds(fds)
            log.error("bad message from the master (%s); %d fds with it closed", exc, len(fds))
            return
        if message.kind == wire.BATCH:
            self._take(message.number, fds, message.marks)
            return
        _close_fds(fds)  # only a batch carries connections
        if message.kind == wire.CMD:
            self.command(message.text)

    def _take(self, batch_id: int, fds: list[int], marks: bytes = b"") -> None:
        """Serve a batch, or refuse it whole so that the master hands it to another worker;
        ``marks``: one per fd (``wire.PROXIED``: it starts with a PROXY protocol header)."""
        limit = self.server_options.get("max_concurrent", math.inf)
        if marks and len(marks) != len(fds):  # a malformed message: as if it did not decode
            _close_fds(fds)
            log.error("bad batch from the master: %d marks for %d fds", len(marks), len(fds))
        elif self._closing:
            self._refuse(batch_id, fds, "it is closing")
        elif self._open + len(fds) > limit:
            self._refuse(batch_id, fds, f"{self._open} of max_concurrent {limit} are open")
        else:
            for fd, mark in zip(fds, marks or bytes(len(fds)), strict=True):
                self._adopt(fd, bool(mark & wire.PROXIED))
            self._acks.append(batch_id)
            self._report_soon()

    def _refuse(self, batch_id: int, fds: list[int], why: str) -> None:
        self._flush_reports()  # the batches taken before this one are acknowledged first
        _close_fds(fds)  # the master keeps its copies until it hears back
        self._send(wire.refuse(batch_id))
        log.warning("worker %d refused batch %d: %s", os.getpid(), batch_id, why)

    def _refuse_message(self, data: bytes, why: str) -> None:
        try:
            message = wire.decode(data)
        except ValueError as exc:
            log.error("bad message from the master (%s)", exc)
            return
        if message.kind == wire.BATCH:
            self._refuse(message.number, [], why)

    def _adopt(self, fd: int, proxied: bool = False) -> None:
        """Give one received connection to the server (``proxied``: it starts with a PROXY
        protocol header). One it cannot serve is closed and counted as finished at once, so
        that the master's count of our connections stays true (the server reports every
        socket it took through ``on_socket_done``)."""
        assert self.server is not None
        self._open += 1
        try:  # (proto=0: one getsockopt() fewer; nothing reads the protocol number)
            sock = socket.socket(proto=0, fileno=fd)
        except OSError as exc:  # not a socket
            os.close(fd)
            log.error("received descriptor %d is not a socket (%s): closed", fd, exc)
            self._socket_done()
            return
        try:
            if sock.type != socket.SOCK_STREAM:  # asyncio would raise ValueError in a task
                raise ValueError(f"not a stream socket: {sock!r}")
            taken = self.server.add_socket(sock, proxy_protocol=proxied)
        except Exception as exc:
            log.error("cannot serve a received socket (%r): closed", exc)
            taken = False
        if not taken:
            sock.close()
            self._socket_done()

    def _socket_done(self) -> None:
        self._open -= 1
        self._closed_count += 1
        self._report_soon()

    def _report_soon(self) -> None:
        if not self._report_scheduled:
            self._report_scheduled = True
            self._loop.call_soon(self._flush_reports)  # type: ignore[union-attr]

    def _flush_reports(self) -> None:
        """One message for this loop iteration: the batches taken and the closed count."""
        self._report_scheduled = False
        count, self._closed_count = self._closed_count, 0
        acks, self._acks = self._acks, []
        for i in range(0, len(acks), wire.MAX_ACKS):
            self._send(wire.ack(acks[i : i + wire.MAX_ACKS], count))
            count = 0
        if count:
            self._send(wire.closed(count))

    def _send_beat(self) -> None:
        server = self.server
        if server is None:
            return
        self._send(wire.beat(server.requests, server.connections))
        logs.flush_access()
        self._beat = self._loop.call_later(self.heartbeat, self._send_beat)  # type: ignore[union-attr]

    def _send(self, message: bytes) -> None:
        if self._outbox:
            self._outbox.append(message)
            return
        try:
            self.channel.send(message)
        except BlockingIOError:
            self._outbox.append(message)
            self._loop.add_writer(self.channel.fileno(), self._flush_outbox)  # type: ignore[union-attr]
        except OSError:
            pass  # the master is gone; the channel's EOF will close us

    def _flush_outbox(self) -> None:
        while self._outbox:
            try:
                self.channel.send(self._outbox[0])
            except BlockingIOError:
                return
            except OSError:
                self._outbox.clear()
                break
            self._outbox.popleft()
        self._loop.remove_writer(self.channel.fileno())  # type: ignore[union-attr]

    # -- the control pipe ------------------------------------------------------------------------

    def _on_control(self) -> None:
        assert self.control is not None and self.server is not None
        try:
            data = os.read(self.control, 4096)
        except BlockingIOError:
            return
        if not data:  # EOF: the master died; finish what we have and exit
            self._loop.remove_reader(self.control)  # type: ignore[union-attr]
            self.close()
            return
        commands, self._control_buf = wire.split_commands(self._control_buf + data)
        for name in commands:
            self.command(name)

    def command(self, name: str) -> None:
        """Obey a master's command: close, pause, resume, reopen-logs, drain or undrain."""
        assert self.server is not None
        if name == "close":
            self.close()
        elif name == "pause":
            self.server.pause()
        elif name == "resume":
            self.server.resume()
        elif name == "reopen-logs":
            logs.reopen()
        elif name == "drain":  # for a load balancer: the health path answers 503
            self.server.drain()
        elif name == "undrain":
            self.server.undrain()


def attach(path: str) -> socket.socket:
    """Connect to a master's ``--attach-socket``: the channel to give :class:`Worker`.

    A process the master did not fork joins its pool this way (an embedded worker): it gets
    connections and commands like any worker, but the master does not respawn it.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def log_error(server: Any, context: Any, op: str, err: BaseException, errno: int | None) -> None:
    """A worker's ``onerror``: log the error with its traceback and request line; go on.

    The server has already answered 500 where no response had started, and cut the response
    off (closed the HTTP/1 connection, reset the HTTP/2 stream) where one had.
    """
    headers = getattr(context, "request_headers", None)
    where = f" in {headers.get(':method')} {headers.get(':path')}" if headers is not None else ""
    log.error("%s error%s: %r", op, where, err, exc_info=err)


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _exit_now() -> None:
    logging.shutdown()
    os._exit(0)


def _with_access_log(onstream: Callable[..., Any]) -> Callable[..., Any]:
    async def logged(server: Any, stream: Any) -> None:
        try:
            await onstream(server, stream)
        except BaseException:
            if stream.status is None:
                stream.status = 500
            raise
        finally:
            headers = stream.request_headers
            logs.access(logs.access_line(stream, headers))

    return logged


class LifespanError(Exception):
    """The application's lifespan startup failed: the worker never becomes ready."""
