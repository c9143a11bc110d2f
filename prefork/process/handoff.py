"""Accepting and handing out: listeners -> dispatcher -> worker channels, and what comes back.

Hand-off (docs/master.md): accept until EAGAIN (at most ``ACCEPT_BATCH`` a turn), let the
pure :class:`~prefork.process.dispatch.Dispatcher` share the batch out, one ``sendmsg`` per
worker; a connection of a PROXY protocol listener is marked so in its batch. The master keeps
its copy of each socket until the worker acknowledges the batch, so a worker that dies first
loses nothing: its unacknowledged connections go to another worker. When no worker can take
more, the master stops accepting and the kernel's backlog holds clients.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable

from prefork.process import fdpass, wire
from prefork.process.pool import Pool, WorkerProcess

log = logging.getLogger("prefork.master")

ACCEPT_BATCH = 64
ACCEPT_BACKOFF = 0.5  # seconds without accepting after EMFILE and the like, instead of spinning
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class ProxiedFd(int):
    """A connection accepted on a PROXY protocol listener (``MasterConfig.proxy_listeners``):
    its type carries the fact to :meth:`Handoff.hand_out`, which marks it in its batch."""

    __slots__ = ()


def _marks(fds: list[int]) -> bytes:
    """A batch's ``wire`` marks: one byte per connection."""
    return bytes(wire.PROXIED if type(fd) is ProxiedFd else 0 for fd in fds)


def close_fd(fd: int) -> None:
    """Close the master's copy of a connection."""
    with contextlib.suppress(OSError):
        os.close(fd)


class Handoff:
    """Accept while some worker can take a connection; read what the workers report.

    Args:
        pool: the shared worker table.
        on_ready: called with a worker when it reports ``READY`` (after the dispatcher knows).
    """

    def __init__(self, pool: Pool, on_ready: Callable[[WorkerProcess], None]) -> None:
        self.pool = pool
        self.on_ready = on_ready
        self.accepting = False
        self.backoff_until = 0.0
        self._marking = bool(pool.config.proxy_listeners)  # batches carry wire marks

    # -- accepting --------------------------------------------------------------------------

    def update_accepting(self) -> None:
        """Watch the listeners exactly when a new connection could be handed out at once."""
        pool = self.pool
        want = (
            pool.stopping is None
            and not pool.paused
            and not pool.waiting
            and time.monotonic() >= self.backoff_until
            and pool.dispatcher.can_accept()
        )
        self._set_accepting(want)

    def _set_accepting(self, want: bool) -> None:
        if want == self.accepting:
            return
        self.accepting = want
        for sock in self.pool.config.listeners:
            if want:
                self.pool.selector.register(sock, selectors.EVENT_READ, self._on_listener)
            else:
                self.pool.unregister(sock)

    def close_listeners(self, unlink: bool) -> None:
        """Stop accepting for good; ``unlink`` the Unix sockets' paths unless another master
        (a binary upgrade) now owns them."""
        self._set_accepting(False)
        config = self.pool.config
        for sock in config.listeners:
            sock.close()
        for path in config.unix_paths if unlink else ():
            with contextlib.suppress(OSError):
                os.unlink(path)
        config.listeners = []
        config.proxy_listeners = []
        config.unix_paths = []

    def _on_listener(self, listener: socket.socket) -> None:
        accepted = []
        proxied = listener in self.pool.config.proxy_listeners
        # The master keeps only the descriptor and passes it on: the socket object is let go
        # at once (detach: no close() later), and a batch's copies are plain ints.
        accept = listener.accept
        for _ in range(ACCEPT_BATCH):
            try:
                fd = accept()[0].detach()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    log.warning("accept: %s; backing off 0.5 s", exc)
                    self.backoff_until = time.monotonic() + ACCEPT_BACKOFF
                    self._set_accepting(False)
                break
            # a PROXY listener's: the same descriptor, in a type that remembers its listener
            accepted.append(ProxiedFd(fd) if proxied else fd)
        self.pool.waiting.extend(accepted)
        self.hand_out()

    def hand_out(self) -> None:
        """Send the waiting connections to workers, one batch per worker, while any can take."""
        pool = self.pool
        while pool.waiting:
            batches, left = pool.dispatcher.assign(pool.waiting, fdpass.MAX_FDS)
            pool.waiting = left
            if not batches:
                return
            for pid, batch_id, fds in batches:
                worker = pool.workers[pid]  # type: ignore[index]
                marks = _marks(fds) if self._marking else b""
                try:
                    fdpass.send(worker.channel, wire.batch(batch_id, marks), fds)
                except OSError:  # full (EAGAIN) or dying: someone else takes these
                    pool.waiting.extend(pool.dispatcher.send_failed(pid, batch_id))

    # -- what the workers say -------------------------------------------------------------------

    def on_channel(self, pid: int, channel: socket.socket) -> None:
        """Read every message waiting on worker ``pid``'s channel (it is readable)."""
        worker = self.pool.workers.get(pid)
        if worker is None:
            return
        while True:
            try:
                data = channel.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the worker is exiting: wait for the reap
                if worker.attached:
                    self.pool.detach(pid, "its channel closed")
                else:
                    self.pool.selector.unregister(channel)
                return
            worker.last_seen = time.monotonic()
            try:
                message = wire.decode(data)
            except ValueError as exc:
                self._bad_peer(worker, exc)
                return
            self._on_message(worker, message)

    def _bad_peer(self, worker: WorkerProcess, exc: ValueError) -> None:
        """A worker sent what no prefork worker sends: it is let go (killed if it is ours), and
        nothing more is read from it. Fds sent with the message were never installed here
        (``recv`` has no room for them: the kernel discards them)."""
        pool = self.pool
        if worker.attached:
            pool.detach(worker.pid, f"it sent a malformed message ({exc})")
            return
        log.error("worker %d sent a malformed message (%s): killing it", worker.pid, exc)
        pool.unregister(worker.channel)
        pool.kill(worker, signal.SIGKILL)

    def _on_message(self, worker: WorkerProcess, message: wire.Message) -> None:
        dispatcher = self.pool.dispatcher
        kind = message.kind
        if kind == wire.ACK:
            for batch_id in message.batches:
                for fd in dispatcher.acked(worker.pid, batch_id):
                    close_fd(fd)
            if message.number:
                dispatcher.closed(worker.pid, message.number)
        elif kind == wire.REFUSE:  # closing, at its limit or out of fds: someone else's
            self.pool.waiting[:0] = dispatcher.refused(worker.pid, message.number)
            log.debug("worker %d refused batch %d", worker.pid, message.number)
        elif kind == wire.CLOSED:
            dispatcher.closed(worker.pid, message.number)
        elif kind == wire.BEAT:
            worker.requests = message.requests
            worker.open_connections = message.number
            dispatcher.heartbeat(worker.pid)
        elif kind == wire.READY:
            worker.ready = True
            if not worker.closing:
                dispatcher.ready(worker.pid)
            log.info("worker %d ready", worker.pid)
            self.on_ready(worker)
        elif kind == wire.ERROR:
            log.error("worker %d: %s", worker.pid, message.text)
