"""Send and receive batches of file descriptors over a Unix socket (SCM_RIGHTS).

Mechanism only: what the batch means is ``wire``'s business. The sockets are non-blocking; on
Python 3.11 ``socket.recv_fds`` drops its flags argument, so ``recvmsg`` is called directly to
get ``MSG_CMSG_CLOEXEC`` (the received fds must not leak into programs the worker execs).
"""

from __future__ import annotations

import array
import os
import socket

MAX_FDS = 253  # SCM_MAX_FD on Linux: the most descriptors one message may carry
_FD_SIZE = array.array("i").itemsize


class TruncatedError(OSError):
    """A message arrived without all of its descriptors (``MSG_CTRUNC``): the receiver is at its
    fd limit. Those that did arrive are closed already; ``data`` is the message, so that the
    receiver can say which batch it could not take."""

    def __init__(self, data: bytes) -> None:
        super().__init__("file descriptors were truncated in transit (MSG_CTRUNC)")
        self.data = data


def send(sock: socket.socket, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
    """Send one message carrying ``fds``; raises BlockingIOError when the channel is full."""
    if len(fds) > MAX_FDS:
        raise ValueError(f"at most {MAX_FDS} fds per message, got {len(fds)}")
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], ancillary)


def receive(sock: socket.socket, bufsize: int = 4096) -> tuple[bytes, list[int]]:
    """Receive one message and the fds it carries (close-on-exec).

    Returns:
        ``(data, fds)``; ``(b"", [])`` means the peer closed the channel.

    Raises:
        BlockingIOError: nothing to read.
        TruncatedError: the message's descriptors were truncated (those received are closed).
        OSError: the channel failed.
    """
    data, ancdata, flags, _ = sock.recvmsg(
        bufsize, socket.CMSG_SPACE(MAX_FDS * _FD_SIZE), socket.MSG_CMSG_CLOEXEC
    )
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _FD_SIZE
            fds.extend(array.array("i", payload[:usable]))
    if flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise TruncatedError(data)
    return data, fds
