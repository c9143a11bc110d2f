"""Binary upgrade, nginx style: USR2 starts a new master on the same sockets, WINCH retires
the old workers, QUIT ends the old master; HUP after WINCH rolls back. No connection refused."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import psutil

from tests.helpers import wait_until
from tests.master_helpers import children, get


class Load:
    """New-connection requests in a thread until stopped (bounded), counting every failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.bodies: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.ok + len(self.failures) < 20000:
            try:
                status, body = get(self.port)
                if status == 200:
                    self.ok += 1
                    self.bodies.add(body.split()[0])
                else:
                    self.failures.append(f"status {status}")
            except OSError as exc:
                self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(20)


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text())
    except (OSError, ValueError):  # not there, or being written
        return None


def new_master_pid(pidfile: Path, old: int) -> int | None:
    pid = read_pid(pidfile)
    return pid if pid != old else None


def test_usr2_winch_quit_switches_masters_without_refusing_a_connection(start_master, tmp_path):
    pidfile = tmp_path / "master.pid"
    master = start_master("pid", "--pidfile", str(pidfile), workers=2)
    old_workers = set(master.workers())
    with Load(master.port) as load:
        master.signal(signal.SIGUSR2)
        new = wait_until(lambda: new_master_pid(pidfile, master.pid), 20, "the new master's pid")
        assert int((tmp_path / "master.pid.oldbin").read_text()) == master.pid
        wait_until(lambda: len(children(new)) == 2, 20, "the new master's workers")
        new_workers = set(children(new))
        wait_until(lambda: get(master.port)[1].split()[0] in {str(p).encode() for p in new_workers}
                   or None, 20, "a response from a new worker")  # fmt: skip
        master.signal(signal.SIGWINCH)
        wait_until(lambda: set(master.workers()) == {new}, 20, "the old workers to retire")
        master.signal(signal.SIGQUIT)
        assert master.wait(15) == 0
        served_before = load.ok
        wait_until(lambda: load.ok > served_before + 20, 20, "requests after the switch")
    try:
        assert load.failures == [], load.failures[:5]
        assert load.ok > 50
        served = {int(b) for b in load.bodies}
        assert served & old_workers and served & new_workers, "both generations served"
        assert not (tmp_path / "master.pid.oldbin").exists()
        assert int(pidfile.read_text()) == new
        status, body = get(master.port)
        assert status == 200 and int(body.split()[0]) in new_workers
    finally:
        os.kill(new, signal.SIGTERM)
        psutil.Process(new).wait(15)
    assert not pidfile.exists(), "the new master removes its pidfile at exit"


def test_hup_after_winch_rolls_back(start_master, tmp_path):
    pidfile = tmp_path / "master.pid"
    master = start_master("pid", "--pidfile", str(pidfile), workers=1)
    master.signal(signal.SIGUSR2)
    new = wait_until(lambda: new_master_pid(pidfile, master.pid), 20, "the new master's pid")
    wait_until(lambda: len(children(new)) == 1, 20, "the new master's worker")
    master.signal(signal.SIGWINCH)
    wait_until(lambda: set(master.workers()) == {new}, 20, "the old worker to retire")
    master.signal(signal.SIGHUP)  # roll back: the old master serves again
    wait_until(lambda: len(master.workers()) == 2, 20, "a worker of the old master again")
    os.kill(new, signal.SIGQUIT)  # the new master goes away
    psutil.Process(new).wait(15)
    wait_until(lambda: read_pid(pidfile) == master.pid, 10, "the pidfile back")
    status, body = get(master.port)
    assert status == 200 and int(body.split()[0]) in master.workers()
