"""The attach socket (``--attach-socket PATH``): processes the master did not fork join the pool.

A Unix ``SOCK_SEQPACKET`` socket, mode 0600; the master also checks the peer's uid with
``SO_PEERCRED``. Each connection becomes a worker's channel, exactly like a forked worker's
(``prefork.process.worker.attach`` is the other end). An attached worker is never signalled,
reaped or respawned: when its channel closes or it falls silent, it is detached.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import stat
import struct
import time

from prefork.process.pool import ChannelHandler, Pool, WorkerProcess

log = logging.getLogger("prefork.master")

_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class AttachSocket:
    """Listen on ``path`` and add each process that connects to the pool.

    Args:
        pool: the shared worker table.
        path: where to listen (a stale socket there is replaced).
        on_channel: reads a new worker's channel (``Handoff.on_channel``).
    """

    def __init__(self, pool: Pool, path: str, on_channel: ChannelHandler) -> None:
        self.pool = pool
        self.path = path
        self.on_channel = on_channel
        self.sock: socket.socket | None = None

    def open(self) -> None:
        """Bind and listen (mode 0600), and watch for joining processes."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o177)  # 0600: only this user may join the pool
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        sock.listen(16)
        sock.setblocking(False)
        self.sock = sock
        self.pool.selector.register(sock, selectors.EVENT_READ, self._on_attach)
        log.info("attach socket %s", self.path)

    def _on_attach(self, listener: socket.socket) -> None:
        try:
            channel, _ = listener.accept()
        except OSError:
            return
        creds = channel.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size)
        pid, uid, _ = _CREDS.unpack(creds)
        if uid != os.getuid() or pid in self.pool.workers:
            log.warning("attach refused: pid %d uid %d", pid, uid)
            channel.close()
            return
        channel.setblocking(False)
        now = time.monotonic()
        generation = self.pool.dispatcher.generation
        worker = WorkerProcess(pid, channel, -1, now, now, generation=generation, attached=True)
        self.pool.add(worker, self.on_channel)
        log.info("worker %d attached", pid)

    def close(self, unlink: bool) -> None:
        """Stop listening; ``unlink`` the path unless another master (an upgrade) owns it."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        self.pool.unregister(sock)
        sock.close()
        if unlink:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def close_in_child(self) -> None:
        """In a new child: close the master's listening socket (the child must not hold it)."""
        if self.sock is not None:
            self.sock.close()
