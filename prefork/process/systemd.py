"""systemd integration: socket activation (``LISTEN_FDS``) and ``Type=notify`` (sd_notify).

Both are small enough to write here rather than depend on a library: sd_notify is one datagram
to ``$NOTIFY_SOCKET``; socket activation is fds 3.. when ``$LISTEN_PID`` is our pid.
"""

from __future__ import annotations

import os
import socket

LISTEN_FDS_START = 3


def listen_fds(unset: bool = True) -> list[socket.socket]:
    """The listening sockets systemd passed us (empty when not socket-activated)."""
    try:
        if int(os.environ.get("LISTEN_PID", "0")) != os.getpid():
            return []
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    if unset:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    socks = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        socks.append(socket.socket(fileno=fd))
    return socks


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address[0] == "@":  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True
