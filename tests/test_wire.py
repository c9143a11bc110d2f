"""Master <-> worker messages (prefork.process.wire) and fd passing (prefork.process.fdpass).

fdpass runs over a real AF_UNIX SOCK_SEQPACKET socketpair, as between master and worker, and
carries real TCP sockets: the received descriptors must work (bytes go through them).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator

import pytest

from prefork.process import fdpass, wire

# -- wire -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [0, 1, 63, 0xFFFFFFFF])
@pytest.mark.parametrize(
    ("encode", "kind"),
    [
        (wire.batch, wire.BATCH),
        (wire.refuse, wire.REFUSE),
        (wire.closed, wire.CLOSED),
    ],
)
def test_u32_messages_round_trip(encode, kind, number):
    data = encode(number)
    assert len(data) == 5
    message = wire.decode(data)
    assert message.kind == kind
    assert message.number == number


@pytest.mark.parametrize(
    ("batches", "closed"), [([0], 0), ([7], 3), ([1, 2, 0xFFFFFFFF], 0xFFFFFFFF)]
)
def test_ack_round_trip(batches, closed):
    """The batches taken in one loop iteration, with the connections closed since the last."""
    data = wire.ack(batches, closed)
    assert len(data) == 5 + 4 * len(batches)
    assert wire.decode(data) == wire.Message(wire.ACK, closed, batches=tuple(batches))


def test_ack_is_bounded():
    assert len(wire.ack(list(range(wire.MAX_ACKS)), 9)) < 4096  # what the master reads at once
    for batches in ([], list(range(wire.MAX_ACKS + 1))):
        with pytest.raises(ValueError):
            wire.ack(batches)


@pytest.mark.parametrize(("requests", "open_"), [(0, 0), (12345, 7), (2**64 - 1, 2**32 - 1)])
def test_beat_round_trip(requests, open_):
    message = wire.decode(wire.beat(requests, open_))
    assert message.kind == wire.BEAT
    assert message.requests == requests
    assert message.number == open_


def test_ready_round_trip():
    message = wire.decode(wire.READY)
    assert message.kind == wire.READY


@pytest.mark.parametrize(
    "text", ["cannot import 'app': ModuleNotFoundError: No module named 'x'", "", "é ✓ 日本"]
)
def test_error_round_trip(text):
    message = wire.decode(wire.error(text))
    assert message.kind == wire.ERROR
    assert message.text == text


def test_batch_marks_round_trip():
    """One mark byte per fd (``wire.PROXIED``: a PROXY protocol connection), or none at all."""
    message = wire.decode(wire.batch(9, bytes([wire.PROXIED, 0, wire.PROXIED])))
    assert (message.kind, message.number, message.marks) == (wire.BATCH, 9, b"\x01\x00\x01")
    assert wire.decode(wire.batch(9)).marks == b""
    assert len(wire.batch(1, bytes(fdpass.MAX_FDS))) < 4096  # what a worker reads at once


def test_error_is_bounded():
    data = wire.error("x" * 100_000)
    assert len(data) <= 4001  # it must fit one channel datagram
    assert wire.decode(data).kind == wire.ERROR


def test_messages_fit_a_datagram_and_are_distinct():
    kinds = {wire.BATCH, wire.READY, wire.ACK, wire.REFUSE, wire.CLOSED, wire.BEAT, wire.ERROR}
    kinds.add(wire.CMD)
    assert len(kinds) == 8
    assert all(len(k) == 1 for k in kinds)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"Z",  # unknown kind
        b"Zxxxx",
        b"A",  # too short
        b"A\x00\x00\x01",
        b"A\x00\x00\x00\x01",  # a closed count and no batch
        b"A" + b"\x00" * 9,  # not whole u32s
        b"N\x00\x00",
        b"B\x00",
        b"C" + b"\x00" * 8,
        b"H" + b"\x00" * 11,  # beat is 12 bytes of body
        b"H" + b"\x00" * 13,
        b"R\x00",  # READY carries nothing
        b"r",
    ],
)
def test_bad_messages_raise_value_error(data):
    with pytest.raises(ValueError):
        wire.decode(data)


def test_commands():
    for name in wire.COMMANDS:
        line = wire.command(name)
        assert line == name.encode() + b"\n"
    assert set(wire.COMMANDS) == {"pause", "resume", "close", "reopen-logs", "drain", "undrain"}
    with pytest.raises(ValueError):
        wire.command("reboot")
    with pytest.raises(ValueError):
        wire.command("close\npause")


def test_split_commands():
    buf = wire.command("pause") + wire.command("resume") + b"clo"
    commands, rest = wire.split_commands(buf)
    assert commands == ["pause", "resume"]
    assert rest == b"clo"
    commands, rest = wire.split_commands(rest + b"se\nreopen-logs\n")
    assert commands == ["close", "reopen-logs"]
    assert rest == b""
    commands, rest = wire.split_commands(b"bogus\n\npause\n")  # unknown lines are dropped
    assert commands == ["pause"]
    assert rest == b""
    assert wire.split_commands(b"") == ([], b"")


# -- fdpass ---------------------------------------------------------------------------------------


@pytest.fixture
def channel() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    b.setblocking(False)
    with a, b:
        yield a, b


@pytest.fixture
def tcp_pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Ten connected TCP pairs on 127.0.0.1: (client, server side)."""
    pairs = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        try:
            for _ in range(10):
                client = socket.create_connection(("127.0.0.1", port), timeout=5)
                server, _ = listener.accept()
                server.settimeout(5)
                pairs.append((client, server))
            yield pairs
        finally:
            for client, server in pairs:
                client.close()
                server.close()


def test_send_receive_a_batch_of_sockets(channel, tcp_pairs):
    master, worker = channel
    fds = [server.fileno() for _, server in tcp_pairs]
    fdpass.send(master, wire.batch(7), fds)
    data, got = fdpass.receive(worker)
    assert wire.decode(data) == wire.Message(wire.BATCH, 7)
    assert len(got) == len(fds)
    received = [socket.socket(fileno=fd) for fd in got]
    try:
        for fd in got:
            assert fd not in fds  # new descriptors in the receiver
            assert not os.get_inheritable(fd)
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # MSG_CMSG_CLOEXEC
        # the sender closes its copies, as the master does after the ack ...
        for _, server in tcp_pairs:
            server.close()
        # ... and the received sockets still carry each connection, in order, both ways
        for i, ((client, _), sock) in enumerate(zip(tcp_pairs, received, strict=True)):
            sock.settimeout(5)
            client.sendall(f"ping {i}".encode())
            assert sock.recv(100) == f"ping {i}".encode()
            sock.sendall(f"pong {i}".encode())
            assert client.recv(100) == f"pong {i}".encode()
    finally:
        for sock in received:
            sock.close()


def test_message_boundaries_keep_fds_with_their_message(channel, tcp_pairs):
    master, worker = channel
    fds = [server.fileno() for _, server in tcp_pairs]
    fdpass.send(master, wire.batch(1), fds[:3])
    fdpass.send(master, wire.ack([99]))  # no fds
    fdpass.send(master, wire.batch(2), fds[3:])
    received: list[int] = []
    try:
        data, got = fdpass.receive(worker)
        received += got
        assert wire.decode(data).number == 1 and len(got) == 3
        data, got = fdpass.receive(worker)
        received += got
        assert wire.decode(data) == wire.Message(wire.ACK, batches=(99,)) and got == []
        data, got = fdpass.receive(worker)
        received += got
        assert wire.decode(data).number == 2 and len(got) == 7
        # the fds of the second batch are the connections 3..9, in order
        for i, fd in enumerate(received[3:], start=3):
            client = tcp_pairs[i][0]
            with socket.socket(fileno=os.dup(fd)) as sock:
                client.sendall(b"x%d" % i)
                sock.settimeout(5)
                assert sock.recv(10) == b"x%d" % i
    finally:
        for fd in received:
            os.close(fd)


def test_max_fds_in_one_message(channel):
    master, worker = channel
    r, w = os.pipe()
    try:
        fdpass.send(master, wire.batch(3), [r] * fdpass.MAX_FDS)
        _, got = fdpass.receive(worker)
        assert len(got) == fdpass.MAX_FDS
        for fd in got:
            os.close(fd)
        with pytest.raises(ValueError):
            fdpass.send(master, wire.batch(4), [r] * (fdpass.MAX_FDS + 1))
    finally:
        os.close(r)
        os.close(w)


def test_receive_on_empty_channel_raises_blocking_io_error(channel):
    _, worker = channel
    with pytest.raises(BlockingIOError):
        fdpass.receive(worker)


def test_receive_eof(channel):
    master, worker = channel
    master.close()
    assert fdpass.receive(worker) == (b"", [])


def test_send_on_full_channel_raises_blocking_io_error(channel):
    master, _ = channel
    with pytest.raises(BlockingIOError):
        for _ in range(100_000):
            fdpass.send(master, wire.ack([1]))


def test_send_to_closed_peer_raises_os_error(channel):
    master, worker = channel
    worker.close()
    with pytest.raises(OSError) as info:
        fdpass.send(master, wire.ack([1]))
    assert not isinstance(info.value, BlockingIOError)  # a dead worker, not a full channel


def test_truncated_fds_raise_truncated_error_with_the_message_and_leak_nothing(channel):
    """A receiver at its fd limit gets MSG_CTRUNC: receive raises TruncatedError (an OSError)
    carrying the message, so the worker can refuse that batch, and closes what did arrive.
    Runs in a child process whose RLIMIT_NOFILE is lowered; its exit status is the verdict."""
    master, worker = channel
    r, w = os.pipe()
    try:
        fdpass.send(master, wire.batch(9), [r] * fdpass.MAX_FDS)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                code = _receive_at_fd_limit(worker)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(r)
        os.close(w)


def _receive_at_fd_limit(worker: socket.socket) -> int:
    """In the child: room for a few fds only; 0 if receive behaves, else 2..4."""
    import resource

    before = set(os.listdir("/proc/self/fd"))
    highest = max(int(fd) for fd in before)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 8, hard))  # room for 7 more fds
    try:
        fdpass.receive(worker)
    except fdpass.TruncatedError as exc:
        if wire.decode(exc.data) != wire.Message(wire.BATCH, 9):
            return 3
    else:
        return 2
    return 0 if set(os.listdir("/proc/self/fd")) == before else 4
