"""The control socket and `prefork ctl` against a live master; the renderers on their own."""

from __future__ import annotations

import ast
import json
import os
import selectors
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from prefork.process import control, controlserver
from prefork.process.controlserver import ControlServer
from tests.helpers import wait_until
from tests.master_helpers import REPO, clean_env, get


def ctl(path: str, *words: str, **popen) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefork", "ctl", "--control-socket", path, *words],
        capture_output=True, text=True, timeout=20, cwd=REPO, env=clean_env(), **popen,
    )  # fmt: skip


def test_status_metrics_scale_pause_resume_and_stop(start_master, tmp_path):
    path = str(tmp_path / "ctl.sock")
    master = start_master("pid", "--control-socket", path, workers=2)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for _ in range(6):
        assert get(master.port)[0] == 200
    table = ctl(path, "status")
    assert table.returncode == 0, table.stderr
    assert f"master {master.pid}: 2 workers" in table.stdout
    for pid in master.workers():
        assert str(pid) in table.stdout
    rows = json.loads(ctl(path, "status", "--json").stdout)
    assert sorted(r["pid"] for r in rows) == sorted(master.workers())
    assert sum(r["total"] for r in rows) >= 6
    assert all(r["state"] == "ready" and r["rss"] > 0 for r in rows)
    metrics = ctl(path, "metrics").stdout
    assert "# TYPE prefork_worker_requests_total counter" in metrics
    assert "prefork_workers 2" in metrics
    assert ctl(path, "workers", "3").stdout == "ok: 3 workers\n"
    master.wait_workers(3)
    assert ctl(path, "pause").returncode == 0
    assert ctl(path, "resume").returncode == 0
    assert get(master.port)[0] == 200
    bad = ctl(path, "workers", "zero")
    assert bad.returncode == 1 and bad.stdout.startswith("error")
    assert ctl(path, "stop").stdout == "ok: stop\n"
    assert master.wait(15) == 0
    assert not os.path.exists(path)


def test_reload_through_ctl_replaces_the_workers(start_master, tmp_path):
    path = str(tmp_path / "ctl.sock")
    master = start_master("pid", "--control-socket", path, workers=2)
    before = set(master.workers())
    assert ctl(path, "reload").stdout == "ok: reload\n"
    wait_until(lambda: set(master.workers()).isdisjoint(before) and len(master.workers()) == 2,
               timeout=20, what="a new generation")  # fmt: skip
    assert get(master.port)[0] == 200


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run the client as another user")
def test_only_the_owner_may_use_it(start_master):
    # A directory anyone may enter (pytest's tmp_path is not): only the socket's mode decides.
    public = tempfile.mkdtemp(prefix="prefork-ctl-", dir="/tmp")
    os.chmod(public, 0o755)
    path = os.path.join(public, "ctl.sock")
    start_master("pid", "--control-socket", path, workers=1)
    pid = os.fork()
    if pid == 0:  # another user tries: the socket's mode keeps it out
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            control.request(path, ["status"], timeout=5)
            code = 1
        except PermissionError:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0, "another user reached the control socket"
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_missing_socket_is_a_clear_error(tmp_path):
    result = ctl(str(tmp_path / "none.sock"), "status")
    assert result.returncode == 1
    assert "none.sock" in result.stderr


def test_renderers():
    rows = [
        {"pid": 7, "generation": 1, "state": "ready", "age": 3.0, "open": 2, "total": 9,
         "requests": 11, "heartbeat_age": 0.4, "rss": 3 * 1048576, "cpu_percent": 12.5}
    ]  # fmt: skip
    text = control.table(rows, 1)
    assert "master 1: 1 workers" in text
    assert text.splitlines()[2].split() == [
        "7",
        "1",
        "ready",
        "3s",
        "2",
        "9",
        "11",
        "0.4s",
        "3M",
        "12",
    ]
    exposition = control.metrics(rows)
    assert "\nprefork_draining 0\n" in exposition
    assert "\nprefork_draining 1\n" in control.metrics(rows, draining=True)
    assert control.table(rows, 1, draining=True).startswith("master 1: 1 workers, draining\n")
    assert 'prefork_worker_connections_total{pid="7",generation="1",state="ready"} 9' in exposition
    assert (
        'prefork_worker_resident_memory_bytes{pid="7",generation="1",state="ready"} 3145728'
        in exposition
    )


class FakeMaster:
    """A ``control.Controlled`` that records what the commands asked for."""

    def __init__(self, workers):
        self.workers = workers
        self.calls = []
        self.draining = False
        self.stopping = False

    def worker_status(self):
        return list(self.workers)

    def set_workers(self, count):
        self.calls.append(("workers", count))
        return count

    def reload(self):
        self.calls.append("reload")

    def pause(self):
        self.calls.append("pause")

    def resume(self):
        self.calls.append("resume")

    def reopen_logs(self):
        self.calls.append("reopen-logs")

    def drain(self):
        self.calls.append("drain")
        self.draining = True

    def undrain(self):
        self.calls.append("undrain")
        if self.stopping:
            return False
        self.draining = False
        return True

    def stop(self, graceful=True):
        self.calls.append(("stop", graceful))


def test_rows_from_snapshots():
    older = control.WorkerStatus(
        pid=7, generation=1, started=10.0, last_seen=19.5, requests=11, open=2, total=9,
        ready=True,
    )  # fmt: skip
    booting = control.WorkerStatus(8, 2, 18.0, 18.0, 0, 0, 0, ready=False)
    rows = control.rows([booting, older], 20.0, {7: (3 * 1048576, 12.5)})
    assert [r["pid"] for r in rows] == [7, 8]  # oldest first
    assert rows[0] == {
        "pid": 7, "generation": 1, "state": "ready", "age": 10.0, "open": 2, "total": 9,
        "requests": 11, "heartbeat_age": 0.5, "rss": 3 * 1048576, "cpu_percent": 12.5,
    }  # fmt: skip
    assert (rows[1]["state"], rows[1]["rss"], rows[1]["cpu_percent"]) == ("booting", 0, 0.0)
    states = [
        control.WorkerStatus(1, 0, 0.0, 0.0, 0, 0, 0, ready=True, closing=True, recycling=True),
        control.WorkerStatus(1, 0, 0.0, 0.0, 0, 0, 0, ready=True, recycling=True),
        control.WorkerStatus(1, 0, 0.0, 0.0, 0, 0, 0, ready=True, attached=True),
        control.WorkerStatus(1, 0, 0.0, 0.0, 0, 0, 0, ready=False, attached=True),
    ]
    assert [s.state for s in states] == ["closing", "recycling", "attached", "booting"]


def test_commands_act_only_through_the_controlled_interface():
    worker = control.WorkerStatus(7, 1, 0.0, 0.0, 3, 1, 4, ready=True)
    target = FakeMaster([worker])
    sampled = []

    def usage(workers):
        sampled.append([w.pid for w in workers])
        return {7: (1048576, 5.0)}

    def ask(line):
        return control.answer(target, line.split(), usage)

    assert json.loads(ask("status --json"))[0]["rss"] == 1048576
    assert "prefork_worker_requests_total" in ask("metrics")
    assert sampled == [[7], [7]]
    assert ask("workers 3") == "ok: 3 workers\n"
    assert ask("workers 0").startswith("error: unknown command")
    for line in ("reload", "pause", "resume", "reopen-logs", "stop", "stop --quick"):
        assert ask(line) == f"ok: {line.split()[0]}\n"
    assert ask("drain") == "ok: drain\n"
    assert ", draining\n" in ask("status") and "prefork_draining 1" in ask("metrics")
    assert ask("undrain") == "ok: undrain\n"
    assert ", draining" not in ask("status")
    target.stopping = True
    assert ask("undrain") == "error: the master is stopping\n"
    assert target.calls == [
        ("workers", 3), "reload", "pause", "resume", "reopen-logs", ("stop", True),
        ("stop", False), "drain", "undrain", "undrain",
    ]  # fmt: skip
    assert ask("") == "error: empty command\n"


def test_usage_sampler_keeps_one_handle_per_live_pid():
    sampler = control.UsageSampler()
    me = control.WorkerStatus(os.getpid(), 0, 1.0, 1.0, 0, 0, 0, ready=True)
    gone = control.WorkerStatus(2**22 + 1, 0, 2.0, 2.0, 0, 0, 0, ready=True)  # over pid_max
    first = sampler.sample([me, gone])
    assert first[os.getpid()][0] > 0
    assert first[gone.pid] == (0, 0.0)
    assert sampler.sample([]) == {}
    assert sampler.sample([me])[os.getpid()][0] > 0


def test_control_never_imports_the_master():
    tree = ast.parse(Path(control.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if m and m.startswith("prefork.process")]


# -- the server side, driven turn by turn ----------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Client:
    """A control client that never blocks: ``poll()`` reads what has arrived."""

    def __init__(self, path: str, line: bytes = b"") -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        if line:
            self.sock.sendall(line)
        self.received = b""
        self.eof = False

    def poll(self) -> bool:
        """Read what is there; whether the server has closed the connection."""
        while not self.eof:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            self.received += data
            self.eof = not data
        return self.eof


@pytest.fixture
def served(tmp_path):
    """A ControlServer on the test's own selector and clock, with a FakeMaster behind it."""
    worker = control.WorkerStatus(os.getpid(), 1, 0.0, 0.0, 3, 1, 4, ready=True)
    sel = selectors.DefaultSelector()
    clock = Clock()
    server = ControlServer(str(tmp_path / "ctl.sock"), FakeMaster([worker]), sel, clock)
    clients: list[Client] = []

    def connect(line: bytes = b"") -> Client:
        clients.append(Client(server.path, line))
        return clients[-1]

    def turns(until, limit: int = 200) -> None:
        """Run the master's part (select, callbacks, expire) until ``until()``, boundedly."""
        for _ in range(limit):
            if until():
                return
            for key, _ in sel.select(0.05):
                key.data(key.fileobj)
            server.expire()
        assert until()

    yield server, clock, connect, turns
    server.close()
    sel.close()
    for client in clients:
        client.sock.close()


def test_control_server_answers_beside_silent_clients_and_closes_them_at_their_deadline(served):
    server, clock, connect, turns = served
    silent = [connect() for _ in range(3)]
    turns(lambda: len(server.clients) == 3)
    client = connect(b"status --json\n")
    turns(client.poll)
    assert json.loads(client.received)[0]["pid"] == os.getpid()
    assert not any(s.poll() for s in silent)  # still waiting for their line
    assert server.next_deadline() == clock.now + controlserver.CLIENT_DEADLINE
    clock.now += controlserver.CLIENT_DEADLINE
    server.expire()
    assert all(s.poll() for s in silent) and server.clients == {}
    assert server.next_deadline() is None


def test_control_server_bounds_the_line_and_the_clients(served):
    server, clock, connect, turns = served
    long = connect(b"x" * (controlserver.LINE_MAX + 1))
    turns(long.poll)
    assert long.received == b"error: command longer than 1024 bytes\n"
    split = connect(b"work")  # a line in two parts, the second after a turn
    turns(lambda: len(server.clients) == 1)
    split.sock.sendall(b"ers 2\n")
    turns(split.poll)
    assert split.received == b"ok: 2 workers\n"
    crowd: list[Client] = []
    while len(crowd) < controlserver.MAX_CLIENTS + 4:  # a few at a time: the backlog is 8
        crowd += [connect() for _ in range(4)]
        want = min(len(crowd), controlserver.MAX_CLIENTS)
        turns(lambda want=want: len(server.clients) == want)
    for _ in range(3):  # the others wait in the backlog, not in the master
        for key, _ in server.selector.select(0.01):
            key.data(key.fileobj)
    assert len(server.clients) == controlserver.MAX_CLIENTS
    clock.now += controlserver.CLIENT_DEADLINE  # those served time out; the rest get in
    turns(lambda: all(c.poll() for c in crowd[: controlserver.MAX_CLIENTS]))
    turns(lambda: len(server.clients) == 4)
    last = connect(b"pause\n")
    turns(last.poll)
    assert last.received == b"ok: pause\n"
