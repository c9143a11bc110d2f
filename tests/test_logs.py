"""The access log is cheap (issue #13): lines are held and written together, never lost.

The held lines go out when 256 are held, when the oldest is a second old, at every heartbeat
of a worker, at a reopen, and at exit (``logging.shutdown()``, also on a quick stop); an
access logger configured by someone else gets them through ``logging``. The unit tests run
in a child interpreter: ``logs.configure`` replaces the process's logging set-up.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import wait_until
from tests.master_helpers import REPO, clean_env, get


def run(code: str) -> str:
    """Run ``code`` (after ``from prefork import logs``) in a child interpreter; its stdout."""
    source = "import logging\nfrom prefork import logs\n" + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_lines_are_held_then_written_together(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    out = run(
        f"""
        path = {str(path)!r}
        logs.configure("info", "-", path)
        for i in range(3):
            logs.access(f"line {{i}}")
        print(len(open(path).read().splitlines()))  # held
        logs.flush_access()
        print(len(open(path).read().splitlines()))
        for i in range(3, 259):  # the 256th held line writes them
            logs.access(f"line {{i}}")
        print(len(open(path).read().splitlines()))
        logs.access("last")
        logging.shutdown()  # at exit
        print(open(path).read().splitlines()[-1])
        """
    )
    assert out.split("\n")[:4] == ["0", "3", "259", "last"]


def test_an_access_logger_configured_elsewhere_gets_records(tmp_path: Path) -> None:
    out = run(
        """
        import sys
        logs.configure("info", "-", None)
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("record: %(message)s"))
        logs.ACCESS.addHandler(handler)
        logs.ACCESS.setLevel(logging.INFO)
        logs.access("GET / 200")
        """
    )
    assert out == "record: GET / 200\n"


def test_held_lines_reach_the_file_when_workers_stop_quickly(start_master, tmp_path) -> None:
    """INT: the workers exit at once (os._exit after logging.shutdown): no line is lost."""
    access_log = tmp_path / "access.log"
    master = start_master("pid", "--access-log", str(access_log), workers=1)
    for i in range(5):
        assert get(master.port, f"/n{i}")[0] == 200
    master.signal(signal.SIGINT)
    master.wait(10)
    requests = [line.split('"')[1] for line in access_log.read_text().splitlines()]
    assert [r for r in requests if "/n" in r] == [f"GET /n{i} HTTP/1.1" for i in range(5)]


def test_a_worker_writes_its_held_lines_within_a_heartbeat(start_master, tmp_path) -> None:
    access_log = tmp_path / "access.log"
    master = start_master("pid", "--access-log", str(access_log), workers=1)
    assert get(master.port, "/once")[0] == 200  # one line, then nothing more happens
    wait_until(lambda: "/once" in access_log.read_text(), 10, "the heartbeat to write it")
