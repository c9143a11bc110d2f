"""The master's end of the control socket (``--control-socket PATH``), served from the master's
own selector so that no client can hold up the master.

Each client is a non-blocking socket with a deadline: it sends one line, gets the answer of
:func:`~prefork.process.control.answer` and is closed. A client that says nothing, sends an
endless line or reads nothing is closed at its deadline; meanwhile the master serves on. The
commands, the renderers and the client (``prefork ctl``) are in ``control.py``.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from prefork.process.control import Controlled, UsageSampler, answer

CLIENT_DEADLINE = 2.0  # seconds a client has to send its line and take the answer
LINE_MAX = 1024  # bytes in a command line
MAX_CLIENTS = 16  # clients served at once; more wait in the listen backlog
ACCEPT_PER_TURN = 4  # clients accepted per wake-up of the master


@dataclass
class _Client:
    deadline: float
    inbox: bytes = b""
    outbox: bytes = b""


class ControlServer:
    """The master's end, served from the master's selector: it never blocks the master.

    Each client is a non-blocking socket in ``selector`` with ``CLIENT_DEADLINE`` seconds to
    send one line of at most ``LINE_MAX`` bytes and take the answer; then it is closed. Work
    per wake-up is bounded: ``ACCEPT_PER_TURN`` accepts, one read or write per ready client,
    at most ``MAX_CLIENTS`` clients at once (the others wait in the listen backlog).

    Args:
        path: where to listen (mode 0600; a file there is replaced).
        target: what the commands act on.
        selector: the master's; each registered callback takes the ready socket.
        clock: ``time.monotonic``, or a test's.
    """

    def __init__(
        self,
        path: str,
        target: Controlled,
        selector: selectors.BaseSelector,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.target = target
        self.selector = selector
        self.clock = clock
        self.usage = UsageSampler()
        self.clients: dict[socket.socket, _Client] = {}
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        self.sock.listen(8)
        self.sock.setblocking(False)
        self._listening = False
        self._closed = False
        self._listen(True)

    def close(self, unlink: bool = True) -> None:
        """Stop listening, drop every client; ``unlink`` the path."""
        self._closed = True
        for client in list(self.clients):
            self._drop(client)
        self._listen(False)
        self.sock.close()
        if unlink:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def close_in_child(self) -> None:
        """In a new child: close the sockets (the selector is the master's to close)."""
        for client in self.clients:
            client.close()
        self.sock.close()

    def expire(self) -> None:
        """Close the clients past their deadline (the master calls it every turn)."""
        now = self.clock()
        for client, state in list(self.clients.items()):
            if now >= state.deadline:
                self._drop(client)

    def next_deadline(self) -> float | None:
        """The earliest client deadline, if any client is connected."""
        return min((state.deadline for state in self.clients.values()), default=None)

    def _listen(self, want: bool) -> None:
        if want == self._listening or (want and self._closed):
            return
        self._listening = want
        if want:
            self.selector.register(self.sock, selectors.EVENT_READ, self._on_listener)
        else:
            self.selector.unregister(self.sock)

    def _on_listener(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_PER_TURN):
            if len(self.clients) >= MAX_CLIENTS:
                self._listen(False)  # until one leaves
                return
            try:
                client, _ = sock.accept()
            except OSError:  # none left (EAGAIN), or the client gave up
                return
            client.setblocking(False)
            if _peer_uid(client) != os.getuid():
                with contextlib.suppress(OSError):
                    client.send(b"error: permission denied\n")
                client.close()
                continue
            self.clients[client] = _Client(self.clock() + CLIENT_DEADLINE)
            self.selector.register(client, selectors.EVENT_READ, self._on_readable)

    def _on_readable(self, client: socket.socket) -> None:
        state = self.clients.get(client)
        if state is None:  # dropped earlier in this turn
            return
        try:
            data = client.recv(LINE_MAX + 1 - len(state.inbox))
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)
            return
        state.inbox += data
        line, newline, _ = state.inbox.partition(b"\n")
        if data and not newline and len(line) <= LINE_MAX:
            return  # the rest of the line is still to come
        if len(line) > LINE_MAX:
            text = f"error: command longer than {LINE_MAX} bytes\n"
        else:
            text = answer(self.target, line.decode("utf-8", "replace").split(), self.usage.sample)
        state.outbox = text.encode()
        self.selector.modify(client, selectors.EVENT_WRITE, self._on_writable)
        self._on_writable(client)

    def _on_writable(self, client: socket.socket) -> None:
        state = self.clients.get(client)
        if state is None:  # dropped earlier in this turn
            return
        try:
            sent = client.send(state.outbox)
        except BlockingIOError:
            return
        except OSError:
            sent = len(state.outbox)  # the client left: nothing more to send
        state.outbox = state.outbox[sent:]
        if not state.outbox:
            self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        del self.clients[client]
        self.selector.unregister(client)
        client.close()
        self._listen(True)


def _peer_uid(client: socket.socket) -> int:
    try:
        creds = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return -1
    return int(struct.unpack("3i", creds)[1])
