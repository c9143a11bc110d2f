"""Issue 9, the process items: no input, peer or load crashes the master or makes a worker churn.

Real masters (``python -m prefork`` in its own session, every process group SIGKILLed in
teardown by tests/master_helpers.py), real sockets and real signals; waits are polls with
deadlines on observable events (a log line, a pid, a connection held). Where the worker side
is tested alone, a real :class:`~prefork.process.worker.Worker` runs in a thread on a real
SOCK_SEQPACKET socketpair and the test plays the master.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from prefork.headers import Headers
from prefork.process import fdpass, wire
from prefork.process.worker import Worker
from tests.conftest import hello
from tests.helpers import read_response, wait_until
from tests.master_helpers import REPO, MasterProc, Masters, alive, clean_env, get, raw_get

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
        left = re.compile(rf"attached worker {os.getpid()} left: .*malformed")
        wait_until(lambda: left.search(master.stderr()), what="the master to log the detach")
        master.check_running()
        with pytest.raises(BrokenPipeError):  # the master kept no copy of the fd it was sent
            os.write(write_end, b"x")
    finally:
        os.close(write_end)
        if read_end >= 0:
            os.close(read_end)
    assert get(master.port)[0] == 200


# -- 4. what a worker cannot take goes back; what it cannot serve is closed and reported ---------


def test_a_worker_at_its_fd_limit_refuses_batches_and_serves_on(start_master):
    """The worker may hold 128 descriptors (tests/apps/fdlimit.py); 150 clients each send a
    keep-alive request and keep the connection open. Batches that do not fit arrive truncated
    (MSG_CTRUNC): the worker refuses them instead of taking that for "master gone" and exiting,
    and the master hands them out again as the clients close. One worker answers all 150."""
    master = start_master("fdlimit", workers=1)
    (pid,) = master.wait_workers(1)
    keep_alive = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
    socks = open_clients(master.port, 150, keep_alive)
    refused = re.compile(rf"worker {pid} refused batch \d+: .*fd limit")
    bodies = []
    try:  # nothing closes before the worker is at its limit: how fast the master runs ahead of
        # this reader is the scheduler's choice, so the test waits for the refusal itself
        wait_until(lambda: refused.search(master.stderr()), what="the worker to refuse a batch")
        for sock in socks:  # one response each, then close: the worker's descriptors free up
            bodies.append(read_keep_alive_response(sock))
            sock.close()
    finally:
        for sock in socks:
            sock.close()
    assert bodies == [f"{pid}\n".encode()] * 150, master.stderr()[-3000:]
    assert master.workers() == [pid] and "died" not in master.stderr()


def read_keep_alive_response(sock: socket.socket) -> bytes:
    """Read one response with a content-length; its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the body"
        body += chunk
    return body


class ChannelPeer:
    """The master's end of one worker's channel, for a real Worker running in a thread.

    ``onstream`` is the worker's app; ``server_options`` go to its server. Messages the worker
    sends are read with :meth:`expect`; CLOSED counts are summed in ``closed``.
    """

    def __init__(
        self,
        onstream: Callable[..., Any],
        on_stop: Callable[[], None] | None = None,
        **server_options: Any,
    ) -> None:
        self.on_stop = on_stop  # lets the app's handlers finish (a test that failed midway)
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.channel.settimeout(10)
        self.theirs = theirs
        options = {"tls": False, **server_options}
        self.worker = Worker(onstream, theirs, server_options=options, heartbeat=60)
        self.thread = threading.Thread(target=self.worker.run, name="worker", daemon=True)
        self.thread.start()
        self.closed = 0
        assert self.expect(wire.READY).kind == wire.READY

    def send(self, data: bytes, fds: list[int] | None = None) -> None:
        fdpass.send(self.channel, data, fds or [])

    def expect(self, *kinds: bytes) -> wire.Message:
        """The next message of one of ``kinds`` (closed counts on the way are summed: CLOSED's,
        and the one an ACK carries)."""
        while True:
            message = wire.decode(self.channel.recv(4096))
            if message.kind in (wire.CLOSED, wire.ACK):
                self.closed += message.number
            if message.kind in kinds:
                return message

    def answer(self) -> tuple[bytes, int]:
        """The answer to the one batch sent last: ``(wire.ACK or wire.REFUSE, batch id)``."""
        message = self.expect(wire.ACK, wire.REFUSE)
        if message.kind == wire.ACK:
            (batch_id,) = message.batches
            return wire.ACK, batch_id
        return wire.REFUSE, message.number

    def wait_closed(self, count: int) -> None:
        while self.closed < count:
            self.expect(wire.CLOSED)

    def stop(self) -> None:
        if self.on_stop is not None:
            self.on_stop()
        self.channel.close()  # EOF: the worker closes its server and returns
        self.thread.join(10)
        assert not self.thread.is_alive(), "the worker did not stop"
        self.theirs.close()


@pytest.fixture
def channel_peer() -> Iterator[Callable[..., ChannelPeer]]:
    started: list[ChannelPeer] = []

    def start(
        onstream: Callable[..., Any],
        on_stop: Callable[[], None] | None = None,
        **server_options: Any,
    ) -> ChannelPeer:
        peer = ChannelPeer(onstream, on_stop, **server_options)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


@pytest.fixture
def tcp_pair() -> Iterator[Callable[[], tuple[socket.socket, socket.socket]]]:
    """Makes connected TCP pairs on 127.0.0.1, ``(client, accepted)``; all closed at the end."""
    made: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def make() -> tuple[socket.socket, socket.socket]:
            client = socket.create_connection(listener.getsockname(), timeout=10)
            accepted, _ = listener.accept()
            made.extend((client, accepted))
            return client, accepted

        yield make
    for sock in made:
        sock.close()


def reader_is_gone(write_end: int) -> bool:
    """Whether every copy of the pipe's read end is closed (a write then fails with EPIPE)."""
    try:
        os.write(write_end, b"x")
    except BrokenPipeError:
        return True
    return False


def test_what_a_worker_cannot_serve_is_closed_and_reported_and_the_rest_served(
    channel_peer, tcp_pair
):
    """A batch with a pipe (not a socket) and a SEQPACKET socket (not a stream: asyncio raises
    ValueError, not OSError) besides a real connection: the worker acknowledges the batch,
    closes the two and reports them closed at once (the master's count of its connections stays
    true), and serves the third."""
    peer = channel_peer(hello)
    read_end, write_end = os.pipe()
    dgram, dgram_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client, accepted = tcp_pair()
    with dgram_peer:
        peer.send(wire.batch(1), [read_end, dgram.fileno(), accepted.fileno()])
        assert peer.answer() == (wire.ACK, 1)
        os.close(read_end)  # the master closes its copies after the ack
        dgram.close()
        accepted.close()
        peer.wait_closed(2)
        try:
            assert reader_is_gone(write_end), "the worker leaked the pipe"
        finally:
            os.close(write_end)
        dgram_peer.settimeout(10)
        assert dgram_peer.recv(10) == b"", "the worker leaked the SEQPACKET socket"
    client.sendall(REQUEST)
    assert read_response(client).startswith(b"HTTP/1.1 200")
    peer.wait_closed(3)


def test_fds_with_a_message_that_is_not_a_batch_are_closed(channel_peer, tcp_pair):
    """Fds with an undecodable message, or with a message that carries none (a command), are
    closed by the worker, which goes on serving."""
    peer = channel_peer(hello)
    for message in (b"Zjunk", wire.control("resume")):
        read_end, write_end = os.pipe()
        try:
            peer.send(message, [read_end])
            os.close(read_end)
            gone = functools.partial(reader_is_gone, write_end)
            wait_until(gone, what="the worker to close the fd")
        finally:
            os.close(write_end)
    client, accepted = tcp_pair()
    peer.send(wire.batch(2), [accepted.fileno()])
    assert peer.answer() == (wire.ACK, 2)
    accepted.close()
    client.sendall(REQUEST)
    assert read_response(client).startswith(b"HTTP/1.1 200")


# -- 9. max_concurrent: changed by a reload, and kept by the worker itself -----------------------


def test_hup_changing_max_concurrent_reaches_the_dispatcher(start_master, tmp_path):
    """--config with max-concurrent = 2, then 4 and HUP: the new worker gets four slow requests
    at once (each answers its headers at once, then sleeps 8 s); with the old limit the third
    would wait in the master until one of the first two finished."""
    config = tmp_path / "prefork.toml"
    config.write_text("max-concurrent = 2\n")
    master = start_master("slow", "--config", str(config), workers=1)
    (old,) = master.wait_workers(1)
    config.write_text("max-concurrent = 4\n")
    master.signal(signal.SIGHUP)
    wait_until(lambda: old not in master.workers() and len(master.ready_workers()) == 1,
               what="the new generation")  # fmt: skip
    socks = open_clients(master.port, 4, b"GET /?ms=8000 HTTP/1.1\r\nHost: test\r\n\r\n")
    try:
        for sock in socks:  # headers come before the sleep: each request is in the worker
            sock.settimeout(5)
            assert sock.recv(100).startswith(b"HTTP/1.1 200"), master.stderr()[-2000:]
    finally:
        for sock in socks:
            sock.close()


class Gate:
    """An app whose handlers wait, after reading the request head, until the test opens the
    gate from its own thread; ``entered`` counts the handlers waiting."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None

    async def onstream(self, server: Any, stream: Any) -> None:
        await stream.get_headers()
        if self.event is None:
            self.loop, self.event = asyncio.get_running_loop(), asyncio.Event()
        self.entered.release()
        await self.event.wait()
        await hello_reply(stream)

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=10), "no handler started"

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker's loop (the loop of the first handler) and wait for it."""
        assert self.loop is not None
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(lambda: done.set_result(fn()))
        return done.result(10)

    def open(self) -> None:
        assert self.event is not None
        self.call(self.event.set)

    def release(self) -> None:
        """Open the gate without waiting, if a handler ever ran (for teardown)."""
        if self.loop is not None and self.event is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing waits
                self.loop.call_soon_threadsafe(self.event.set)


async def hello_reply(stream: Any) -> None:
    h = Headers()
    h.append(":status", "200")
    h.append("content-length", "6")
    await stream.write_headers(h, False)
    await stream.write_chunk(b"hello\n", True)


def test_a_worker_at_max_concurrent_refuses_a_batch_rather_than_exceed_it(channel_peer, tcp_pair):
    """The master's accounting keeps a forked worker under its limit (docs/master.md); a worker
    whose limit is lower than the master thinks (an attached one) still never exceeds it: it
    refuses the batch, closes its copies, and takes it once a connection has closed."""
    gate = Gate()
    peer = channel_peer(gate.onstream, gate.release, max_concurrent=1)
    first, accepted = tcp_pair()
    peer.send(wire.batch(1), [accepted.fileno()])
    assert peer.answer() == (wire.ACK, 1)
    accepted.close()
    first.sendall(REQUEST)
    gate.wait_entered()
    second, accepted = tcp_pair()
    peer.send(wire.batch(2), [accepted.fileno()])
    assert peer.answer() == (wire.REFUSE, 2)
    gate.open()
    assert read_response(first).endswith(b"hello\n")
    peer.wait_closed(1)
    peer.send(wire.batch(3), [accepted.fileno()])  # the master's copy, handed out again
    assert peer.answer() == (wire.ACK, 3)
    accepted.close()
    second.sendall(REQUEST)
    assert read_response(second).endswith(b"hello\n")


def test_a_batch_arriving_after_close_is_refused_not_dropped(channel_peer, tcp_pair):
    """``close`` takes what is on the channel; a batch that comes later is refused (the master
    gives it to another worker), not taken by a closing server and closed unserved."""
    gate = Gate()
    peer = channel_peer(gate.onstream, gate.release)
    first, accepted = tcp_pair()
    peer.send(wire.batch(1), [accepted.fileno()])
    assert peer.answer() == (wire.ACK, 1)
    accepted.close()
    first.sendall(REQUEST)
    gate.wait_entered()  # a request in flight: the closing worker's loop runs on
    gate.call(peer.worker.close)
    second, accepted = tcp_pair()
    peer.send(wire.batch(2), [accepted.fileno()])
    assert peer.answer() == (wire.REFUSE, 2)
    second.setblocking(False)
    with pytest.raises(BlockingIOError):  # still open: the master's copy is alive
        second.recv(1)
    gate.open()
    assert read_response(first).endswith(b"hello\n")


# -- 10. the control socket never blocks the master ----------------------------------------------


def test_silent_control_clients_do_not_hold_up_requests(start_master, tmp_path):
    """Eight clients connect to --control-socket and say nothing. The master serves them from
    its selector, so 50 requests meanwhile are answered at once (a master that waited a second
    for each silent client took eight), ``prefork ctl status`` still answers, and each silent
    client is closed at its deadline."""
    path = str(tmp_path / "ctl.sock")
    master = start_master("pid", "--control-socket", path, workers=1)
    silent = []
    try:
        for _ in range(8):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            silent.append(sock)
            sock.connect(path)
        started = time.monotonic()
        for _ in range(50):
            assert get(master.port, timeout=10)[0] == 200
        elapsed = time.monotonic() - started
        assert elapsed < 3.0, f"50 requests took {elapsed:.1f} s beside silent control clients"
        status = ctl(path, "status")
        assert status.returncode == 0 and f"master {master.pid}: 1 workers" in status.stdout
        for sock in silent:
            sock.settimeout(10)
            assert sock.recv(100) == b"", "a silent client is closed at its deadline"
    finally:
        for sock in silent:
            sock.close()
    master.check_running()


def ctl(path: str, *words: str) -> subprocess.CompletedProcess[str]:
    """``prefork ctl --control-socket PATH WORDS``, bounded."""
    return subprocess.run(
        [sys.executable, "-m", "prefork", "ctl", "--control-socket", path, *words],
        capture_output=True, text=True, timeout=20, cwd=REPO, env=clean_env(),
    )  # fmt: skip
