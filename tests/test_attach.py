"""Embedded workers: a process the master did not fork joins through --attach-socket, serves
connections like any worker, obeys commands, and its death loses no other request."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.master_helpers import REPO, clean_env, get

EMBEDDED = str(Path(REPO) / "examples" / "embedded_worker.py")


@pytest.fixture
def embedded(tmp_path):
    started: list[subprocess.Popen[bytes]] = []

    def start(path: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"embedded{len(started)}.err", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, EMBEDDED, path],
                cwd=REPO,
                env=clean_env(),
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def served_by_embedded(port: int, pid: int, tries: int = 200) -> bool:
    for _ in range(tries):
        status, body = get(port)
        assert status == 200
        if body == f"served by embedded worker {pid}\n".encode():
            return True
    return False


def test_an_attached_worker_serves_and_its_death_loses_nothing(start_master, embedded, tmp_path):
    path = str(tmp_path / "attach.sock")
    master = start_master("pid", "--attach-socket", path, workers=1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, "only the owner may attach"
    worker = embedded(path)
    wait_until(lambda: f"worker {worker.pid} ready" in master.stderr(), what="the attach")
    assert served_by_embedded(master.port, worker.pid), "the attached worker got no connection"
    assert worker.pid not in master.workers(), "an attached worker is not the master's child"
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
    wait_until(lambda: f"attached worker {worker.pid} left" in master.stderr(), what="detach")
    for _ in range(50):  # not respawned; the forked worker serves everything, no error
        status, body = get(master.port)
        assert status == 200
        assert not body.startswith(b"served by embedded")


def test_term_closes_attached_workers_too(start_master, embedded, tmp_path):
    path = str(tmp_path / "attach.sock")
    master = start_master("pid", "--attach-socket", path, workers=1)
    worker = embedded(path)
    wait_until(lambda: f"worker {worker.pid} ready" in master.stderr(), what="the attach")
    master.signal(signal.SIGTERM)
    assert master.wait(15) == 0
    assert worker.wait(10) == 0, "the embedded worker drains and returns on close"
    assert not os.path.exists(path), "the attach socket is removed at exit"
