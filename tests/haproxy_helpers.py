"""A real HAProxy for the scale-out tests (Debian's ``haproxy``; tools/test installs it).

``HAProxy(tmp_path).start(config)`` runs ``haproxy -db -f FILE`` in the foreground with a stats
socket added to ``config``'s ``global`` section, waits until every ``bind`` port answers, and
stops the process by pid (SIGKILL after a SIGUSR1 soft stop) in :meth:`stop`.
:meth:`wait_state` polls ``show stat`` on the stats socket until a server is ``UP``/``DOWN``:
the tests synchronise on what the balancer believes, never on a sleep.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import wait_until

HAPROXY = shutil.which("haproxy") or next(
    (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.path.exists(p)), None
)
need_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")


class HAProxy:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.stats = tmp_path / "haproxy.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "haproxy.log"

    def start(self, config: str, timeout: float = 15.0) -> HAProxy:
        assert HAPROXY is not None
        text = config.replace("global\n", f"global\n    stats socket {self.stats} level admin\n", 1)
        cfg = self.tmp_path / "haproxy.cfg"
        cfg.write_text(text)
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(cfg)], capture_output=True)
        assert check.returncode == 0, check.stderr.decode(errors="replace") + text
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        binds = re.findall(r"^\s*bind\s+(\S+):(\d+)", text, re.M)
        for host, port in binds:
            what = f"haproxy on {host}:{port}"
            wait_until(lambda h=host, p=port: self._answers(h, int(p)), timeout, what)
        wait_until(self.stats.exists, timeout, "haproxy's stats socket")
        return self

    def _answers(self, host: str, port: int) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError("haproxy exited:\n" + self.log.read_text(errors="replace"))
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family) as sock:
            sock.settimeout(1)
            return sock.connect_ex((host.strip("[]"), port)) == 0

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self, backend: str) -> dict[str, str]:
        """``server name -> status`` (``UP``, ``DOWN``, ``MAINT``, ``UP 1/2``...) of ``backend``."""
        rows = csv.DictReader(self.command("show stat").lstrip("# ").splitlines())
        return {
            r["svname"]: r["status"]
            for r in rows
            if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_state(self, backend: str, server: str, status: str, timeout: float = 20.0) -> None:
        wait_until(
            lambda: self.states(backend).get(server) == status,
            timeout,
            f"haproxy to see {backend}/{server} {status}",
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.proc = None
