"""The control socket and `prefork ctl` against a live master; the renderers on their own."""

from __future__ import annotations

import ast
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from prefork.process import control
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
    assert target.calls == [
        ("workers", 3), "reload", "pause", "resume", "reopen-logs", ("stop", True),
        ("stop", False),
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
