"""Issue 9, the process items: no input, peer or load crashes the master or makes a worker churn.

Real masters (``python -m prefork`` in its own session, every process group SIGKILLed in
teardown by tests/master_helpers.py), real sockets and real signals; waits are polls with
deadlines on observable events (a log line, a pid, a connection held). Where the worker side
is tested alone, a real :class:`~prefork.process.worker.Worker` runs in a thread on a real
SOCK_SEQPACKET socketpair and the test plays the master.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from prefork.process import fdpass
from tests.helpers import wait_until
from tests.master_helpers import MasterProc, Masters, alive, get, raw_get

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


@pytest.fixture
def start_master(tmp_path: Path) -> Iterator[Callable[..., MasterProc]]:
    with Masters(tmp_path) as masters:
        yield masters.start


# -- clients -------------------------------------------------------------------------------------


def open_clients(port: int, count: int, request: bytes = REQUEST) -> list[socket.socket]:
    """``count`` connections, each with ``request`` sent (answers are read by read_all)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(sock)
            sock.sendall(request)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def read_all(socks: list[socket.socket], timeout: float) -> list[bytes]:
    """Read every socket to EOF (or a reset) at once, within ``timeout``; closes them.

    Returns what each one received, in order.
    """
    got = [b""] * len(socks)
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for i, sock in enumerate(socks):
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ, i)
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(deadline - time.monotonic()):
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    got[key.data] += data
                else:
                    sel.unregister(key.fileobj)
    for sock in socks:
        sock.close()
    return got


def status_and_body(response: bytes) -> tuple[int, bytes]:
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        return 0, response
    return int(head.split(b" ", 2)[1]), body


def held_connections(pid: int, port: int) -> int:
    """Established TCP connections to ``port`` that process ``pid`` holds."""
    return sum(
        1
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
    )


# -- 2. a batch larger than one message can carry ------------------------------------------------


def test_more_waiting_connections_than_one_message_carries_reach_the_replacement(start_master):
    """One worker blocks its event loop (``time.sleep``) until the master kills it as silent;
    meanwhile 300 clients connect, and more than ``fdpass.MAX_FDS`` (253) of them wait in the
    master, unacknowledged. The replacement worker gets them in more than one batch and answers
    all 300; the master lives."""
    master = start_master("block", "--timeout", "4", workers=1)
    (old,) = master.wait_workers(1)
    blocker = open_clients(master.port, 1, b"GET /block?s=10 HTTP/1.1\r\nHost: test\r\n\r\n")
    wait_until(lambda: f"worker {old} blocking" in master.stderr(), what="the worker to block")
    socks = open_clients(master.port, 300)
    # More than one message can carry, accepted and not acknowledged: the master holds its copy
    # of each (a full channel, ~280 small messages, leaves the rest in the backlog). The worker
    # is killed 3 to 4 s after it blocked: --timeout 4, a heartbeat a second.
    wait_until(lambda: held_connections(master.pid, master.port) > fdpass.MAX_FDS, timeout=3,
               what="the master to hold more than MAX_FDS connections")  # fmt: skip
    answers = read_all(socks, timeout=30)
    master.check_running()
    read_all(blocker, timeout=0)
    bodies = [status_and_body(a) for a in answers]
    assert [s for s, _ in bodies] == [200] * 300, master.stderr()[-3000:]
    (new,) = master.wait_workers(1)
    assert new != old and not alive(old)
    assert {b for _, b in bodies} == {f"{new}\n".encode()}
    assert len(re.findall(r"worker \d+ silent", master.stderr())) == 1


# -- 3. a malformed message on a channel ---------------------------------------------------------


def test_a_forked_worker_sending_garbage_is_killed_and_replaced(start_master):
    master = start_master("rogue", workers=1)
    (old,) = master.wait_workers(1)
    with contextlib.suppress(OSError):  # the worker may be killed before it answers
        raw_get(master.port, "/garbage")
    wait_until(lambda: f"worker {old} sent a malformed message" in master.stderr(),
               what="the master to log the bad message")  # fmt: skip
    master.check_running()
    wait_until(lambda: not alive(old), what="the bad worker to be killed")
    (new,) = master.wait_workers(1)
    assert new != old
    assert raw_get(master.port)[1] == f"{new}\n".encode()


def test_an_attached_peer_sending_garbage_is_detached_and_its_fds_closed(start_master, tmp_path):
    path = str(tmp_path / "attach.sock")
    master = start_master("pid", "--attach-socket", path, workers=1)
    read_end, write_end = os.pipe()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as peer:
            peer.connect(path)
            peer.settimeout(5)
            fdpass.send(peer, b"Zgarbage", [read_end])
            os.close(read_end)
            read_end = -1
            assert peer.recv(100) == b"", "the master closes the bad peer's channel"
        me = os.getpid()
        assert re.search(rf"attached worker {me} left: .*malformed", master.stderr())
        master.check_running()
        with pytest.raises(BrokenPipeError):  # the master kept no copy of the fd it was sent
            os.write(write_end, b"x")
    finally:
        os.close(write_end)
        if read_end >= 0:
            os.close(read_end)
    assert get(master.port)[0] == 200
