"""Start a server pinned with taskset, wait until it answers, stop it and its children."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import resource
import shlex
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from tools.bench.servers import HOST, REPO, ServerDef


class StartError(Exception):
    """A server did not come up; the message carries its command and output."""


@dataclass
class Running:
    port: int
    proc: subprocess.Popen[bytes]
    command: str  # as run, for the report
    counts_dir: Path | None = None  # BENCH_COUNT_DIR of a `counts` server
    workers: int = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_ready(
    proc: subprocess.Popen[bytes], port: int, timeout: float, https: bool = False
) -> None:
    """Poll with a real GET / until a 2xx answer, the process exits, or the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = (
            http.client.HTTPSConnection(HOST, port, timeout=1.0, context=unverified_tls())
            if https
            else http.client.HTTPConnection(HOST, port, timeout=1.0)
        )
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            resp.read()
            if 200 <= resp.status < 300:
                return
            raise StartError(f"GET / answered {resp.status} {resp.reason}")
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        with contextlib.suppress(subprocess.TimeoutExpired):  # also the poll interval
            raise StartError(f"exited with code {proc.wait(timeout=0.05)} before answering")
    raise StartError(f"no HTTP answer on {HOST}:{port} within {timeout:g} s")


def unverified_tls() -> ssl.SSLContext:
    """A client context that accepts the bench's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate the server, then any children it forked, by PID, with bounded waits."""
    kids: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        kids = psutil.Process(proc.pid).children(recursive=True)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for kid in kids:
        with contextlib.suppress(psutil.Error):
            kid.terminate()
    for kid in psutil.wait_procs(kids, timeout=timeout)[1]:
        with contextlib.suppress(psutil.Error):
            kid.kill()


def wait_workers(proc: subprocess.Popen[bytes], counts_dir: Path, n: int, timeout: float) -> None:
    """Wait until `n` processes have imported the app (tools/peers/work.py's <pid>.ready)."""
    deadline = time.monotonic() + timeout
    while (ready := len(list(counts_dir.glob("*.ready")))) < n:
        if time.monotonic() > deadline:
            raise StartError(f"{ready} of {n} workers loaded the app within {timeout:g} s")
        with contextlib.suppress(subprocess.TimeoutExpired):
            raise StartError(f"exited with code {proc.wait(timeout=0.05)} before its workers")
    time.sleep(0.3)  # imported is not yet serving: let the last one reach its event loop


@contextlib.contextmanager
def running(
    sdef: ServerDef,
    values: dict[str, str],
    log: Path,
    args: argparse.Namespace,
    cpus: str | None = None,
) -> Iterator[Running]:
    port = int(values["port"])
    full = ["taskset", "-c", cpus or str(args.server_cpu), *sdef.render(**values)]
    env = dict(os.environ)
    if sdef.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    counts_dir = None
    if sdef.counts:
        counts_dir = log.with_suffix(".counts")
        counts_dir.mkdir()
        env["BENCH_COUNT_DIR"] = str(counts_dir)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            full, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        try:
            wait_ready(proc, port, args.startup_timeout, sdef.https)
            if counts_dir is not None:
                wait_workers(proc, counts_dir, sdef.workers, args.startup_timeout)
        except StartError as exc:
            output = log.read_text(errors="replace")[-4000:]
            raise StartError(f"{exc}\n$ {shlex.join(full)}\n{output}") from None
        yield Running(port, proc, shlex.join(full), counts_dir, sdef.workers)
    finally:
        stop(proc)


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        print(f"# warning: RLIMIT_NOFILE soft={soft} hard={hard} < {need}", file=sys.stderr)
