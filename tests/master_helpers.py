"""Helpers for tests that run a real ``prefork`` master (``python -m prefork``) in its own session.

``Masters(tmp_path).start(app, *options, ...) -> MasterProc`` (tests/conftest.py's
``start_master`` fixture) runs the master. Every process it started is SIGKILLed by process
group (``os.killpg``) in teardown and waited for, so no test leaves a master or a worker behind.
Readiness is polled with real requests within a bounded deadline; worker pids come from psutil
(the master's children) and from the master's ``worker N ready`` log lines.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from tests.helpers import read_response, wait_until

REPO = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
START_TIMEOUT = 15.0
_READY = re.compile(r"worker (\d+) ready")


def app(name: str) -> str:
    """The APP argument for ``tests/apps/<name>.py`` (absolute path)."""
    return f"{APPS / name}.py:onstream"


def free_port() -> int:
    """A port nobody listens on right now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without systemd variables, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def pid_of(body: bytes) -> int:
    """The pid in a body of tests/apps/pid.py (``"<pid> <count>"``)."""
    return int(body.split()[0])


def children(pid: int) -> list[int]:
    """Pids of process ``pid``'s live (not zombie) children, sorted; none once it is gone."""
    try:
        kids = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in kids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child.pid)
    return sorted(out)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited: it only waits to be reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- clients --------------------------------------------------------------------------------------


def connect(address: Any, timeout: float = 5.0) -> socket.socket:
    """A client socket connected to ``address``: a port on 127.0.0.1, or a unix socket path."""
    if isinstance(address, int):
        return socket.create_connection(("127.0.0.1", address), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(address))
    except BaseException:
        sock.close()
        raise
    return sock


def raw_get(address: Any, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes, bytes]:
    """One ``GET`` on a new connection with ``Connection: close``, read to EOF.

    Returns ``(status, body, everything received)``.
    """
    with connect(address, timeout) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        data = read_response(sock)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError(f"incomplete response: {data[:200]!r}")
    status = int(head.split(b" ", 2)[1])
    return status, body, data


def get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
    """One request with http.client on a new connection: ``(status, body)``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def responds(address: Any) -> bool:
    """Whether a request to ``address`` gets a 200 now."""
    try:
        return raw_get(address, timeout=2.0)[0] == 200
    except OSError:
        return False


def listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` holds a LISTEN socket on."""
    return {
        c.laddr.port
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


# -- the master -----------------------------------------------------------------------------------


class MasterProc:
    """A running ``python -m prefork`` in its own session (its pid is its process group)."""

    def __init__(self, proc: subprocess.Popen[bytes], address: Any, out: Path, err: Path) -> None:
        self.proc = proc
        self.address = address  # port (int) or unix socket path, or None
        self.out = out
        self.err = err
        self.log_path = err  # where "worker N ready" lines go (--error-log moves them)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        assert isinstance(self.address, int)
        return self.address

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def workers(self) -> list[int]:
        """Pids of the master's live children."""
        return children(self.pid)

    def ready_workers(self) -> set[int]:
        """Live children that logged ``worker N ready``."""
        ready = {int(m) for m in _READY.findall(self.log())}
        return ready & set(self.workers())

    def wait_workers(self, count: int, timeout: float = START_TIMEOUT) -> list[int]:
        """Wait until exactly ``count`` workers live and all of them are ready; their pids."""

        def check() -> list[int] | None:
            self.check_running()
            pids = self.workers()
            if len(pids) == count and set(pids) <= self.ready_workers():
                return pids
            return None

        return wait_until(check, timeout, f"{count} ready workers")

    def wait_serving(self, timeout: float = START_TIMEOUT) -> None:
        def check() -> bool:
            self.check_running()
            return responds(self.address)

        wait_until(check, timeout, "the master to answer a request")

    def check_running(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"master exited with {code}; stderr:\n{self.stderr()[-3000:]}")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        """The master's exit status, waiting at most ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"master did not exit within {timeout} s; stderr:\n{self.stderr()[-3000:]}"
            ) from None

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def run_prefork(
    args: list[str], timeout: float = 20, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m prefork ARGS`` to completion (for commands that exit by themselves),
    in its own session; on timeout its whole process group is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefork", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env or clean_env(),
        start_new_session=True,
        **kwargs,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        left = group_members(proc.pid)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"prefork {args} did not exit within {timeout} s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of it may survive the test
    # the command exited: nothing it started may be left running (workers, helpers)
    assert left == [], f"prefork {args} left processes behind: {left}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    out = []
    for p in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
    return out


class Masters:
    """Starts masters; ``close()`` SIGKILLs each one's process group and waits for it. Tests
    use it through tests/conftest.py's ``start_master`` fixture (``masters.start``)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[MasterProc] = []

    def __enter__(self) -> Masters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for master in self.started:
            master.kill_group()

    def start(
        self,
        app_name: str | None = "hello",
        *options: str,
        workers: int | None = 2,
        address: Any = None,
        wait: bool = True,
        env: dict[str, str] | None = None,
        argv: list[str] | None = None,
        **popen: Any,
    ) -> MasterProc:
        """Start ``python -m prefork [--bind ADDRESS] [--workers N] OPTIONS tests/apps/APP``.

        ``address`` None: a free port on 127.0.0.1; a str: a unix socket path; False: no
        ``--bind`` (the options or the environment choose). ``wait``: return once a request is
        answered and ``workers`` (if not None) workers are ready. ``argv`` replaces the whole
        command line; ``popen`` goes to ``subprocess.Popen`` (e.g. ``pass_fds``, or ``cwd``
        instead of the checkout).
        """
        n = len(self.started)
        out, err = self.tmp_path / f"master{n}.out", self.tmp_path / f"master{n}.err"
        popen.setdefault("cwd", REPO)
        if argv is None:
            argv = [sys.executable, "-m", "prefork"]
            if address is None:
                address = free_port()
            if address is False:
                pass
            elif isinstance(address, int):
                argv += ["--bind", f"127.0.0.1:{address}"]
            else:
                argv += ["--bind", f"unix:{address}"]
            if workers is not None:
                argv += ["--workers", str(workers)]
            argv += list(options)
            if app_name is not None:
                argv.append(app(app_name))
        with open(out, "wb") as fout, open(err, "wb") as ferr:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fout,
                stderr=ferr,
                env=env or clean_env(),
                start_new_session=True,
                **popen,
            )
        master = MasterProc(proc, address or None, out, err)
        self.started.append(master)
        if wait:
            if master.address is not None:
                master.wait_serving()
            if workers is not None:
                master.wait_workers(workers)
        return master
