#!/usr/bin/env python3
"""Side-by-side HTTP/1.1 benchmark of prefork against uvicorn (h11) and hypercorn.

Each server runs as ONE process pinned to --server-cpu (taskset), started afresh for every
scenario; wrk is pinned to --load-cpu. Scenarios:
  keep-alive   wrk -t1 -c64 --latency over persistent connections (2 s warm-up first)
  close        the same with "Connection: close": one TCP connection per request
  idle-memory  N connections, one keep-alive request each, left idle: server RSS
               (children included) (after - before) / N
It measures, it doesn't judge: exit 0 unless a server fails to start (1) or wrk/taskset is
missing (2). Ratios are against uvicorn-h11. To extend (h2load, TLS), add a ServerDef to SERVERS
and/or a Scenario to SCENARIOS.

--suite master: multi-process rows (issue 4, item 9), 2 workers per server: prefork (balanced
dispatch, and --dispatch round-robin), uvicorn --workers 2 (h11), gunicorn gthread and gunicorn's
asgi worker (a shared accept socket). The whole server runs on --mp-server-cpus (default 0,1:
both cores, so the two workers can run in parallel) and wrk on --load-cpu (1) with -t1, so wrk
shares core 1 with the server: the table shows the CPU both used. The apps (tools/peers/work.py)
answer hello, /burn (5 ms of CPU) and /pid, and count requests per process in mmapped files.
Scenarios:
  keep-alive   as above (-c64), plus the per-worker share of requests
  close        as above: the new-connection rate, which tests the master's hand-off
  skew         one connection per request, each /burn with probability 1/5 (tools/skew.lua),
               wrk -c--skew-connections (8); p99 against gunicorn-asgi-w2 and prefork-rr-w2
  skew-ka      the skewed load over keep-alive connections (not run unless named)
  spread       --connections keep-alive connections opened in one burst, each asks /pid:
               connections per worker, --spread-rounds times
Ratios: req/s against uvicorn-w2; skew p99 against gunicorn-asgi-w2 (below 1 is better).

--suite tls: HTTP/2 and HTTPS rows (issue 3, item 7), one process per server pinned to
--server-cpu, h2load -t1 / wrk -t1 on --load-cpu. One self-signed P-256 certificate and key are
made in a temporary directory at the start (deleted at the end) and given to every TLS server;
prefork runs tools/peers/prefork_serve.py (tls=False for h2c, tls=True with that certificate).
Scenarios (each against its own servers):
  h2c               h2load -n50000 -c16 -m10 http://  (prior knowledge): prefork-h2c vs
                    hypercorn-h2c
  h2-tls            the same over https:// (ALPN h2): prefork-tls vs hypercorn-tls
  https-keep-alive  wrk -t1 -c64 over https:// (HTTP/1.1): prefork-tls, uvicorn-h11-tls,
                    hypercorn-tls; ratio to uvicorn-h11-tls
  https-close       the same with "Connection: close": a new TLS handshake per request
h2load's failed / errored / timed-out requests are counted as errors and its messages printed.
Goals: h2c and h2-tls >= 2x hypercorn, https-keep-alive >= 1.3x uvicorn-h11 (reported only).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as tools/bench.py
from tools.peers.work import read_counts

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # never anything else
BASELINE = "uvicorn-h11"
PEER_PACKAGES = ("uvicorn", "hypercorn", "gunicorn")
ASGI_APP = "tools.peers.asgi_hello:app"
KEEPALIVE_S = "300"  # peers' idle timeout (default 5 s) so idle-memory sockets stay open


@dataclass(frozen=True)
class ServerDef:
    """How to start one server; argv templates use {python} {venv} {repo} {host} {port}."""

    argv: tuple[str, ...]
    needs: str  # file that must exist, else the server is skipped (not an error)
    peer: bool = False  # installed in the peers venv
    pythonpath: bool = False  # put the repo on PYTHONPATH (prefork is not pip-installed)
    workers: int = 1  # processes that serve requests
    counts: bool = False  # the app is tools/peers/work.py's: /burn, /pid, per-process counts
    https: bool = False  # serves TLS only: the readiness probe is an HTTPS GET (not verified)

    def render(self, **values: str) -> list[str]:
        return [part.format(**values) for part in self.argv]


SERVERS: dict[str, ServerDef] = {
    "prefork": ServerDef(
        ("{python}", "examples/hello.py", "--host", "{host}", "--port", "{port}", "--quiet"),
        needs="{repo}/examples/hello.py",
        pythonpath=True,
    ),
    "uvicorn-h11": ServerDef(
        (
            "{venv}/bin/uvicorn",
            "--http",
            "h11",
            "--loop",
            "asyncio",
            "--no-access-log",
            "--log-level",
            "warning",
            "--timeout-keep-alive",
            KEEPALIVE_S,
            "--app-dir",
            "{repo}",
            ASGI_APP,
            "--host",
            "{host}",
            "--port",
            "{port}",
        ),
        needs="{venv}/bin/uvicorn",
        peer=True,
    ),
    "hypercorn": ServerDef(  # --workers 0 serves in-process (--workers 1 forks a worker)
        (
            "{venv}/bin/hypercorn",
            "--bind",
            "{host}:{port}",
            "--log-level",
            "warning",
            "--workers",
            "0",
            "--keep-alive",
            KEEPALIVE_S,
            ASGI_APP,
        ),
        needs="{venv}/bin/hypercorn",
        peer=True,
    ),
}


class StartError(Exception):
    """A server did not come up; the message carries its command and output."""


@dataclass
class Running:
    port: int
    proc: subprocess.Popen[bytes]
    command: str  # as run, for the report
    counts_dir: Path | None = None  # BENCH_COUNT_DIR of a `counts` server
    workers: int = 1


@dataclass(frozen=True)
class Scenario:
    run: Callable[[Running, argparse.Namespace], dict[str, Any]]
    metric: str  # result key compared with the baseline in the ratio column ("": no ratio)
    baseline: str | None = None  # the server to compare with, when not the suite's baseline
    counts: bool = False  # needs a `counts` server (others are skipped for this scenario)
    servers: tuple[str, ...] = ()  # the only servers it runs against (empty: all the suite's)


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


def rss_kib(pid: int) -> float:
    """RSS of the process plus all its descendants, in KiB."""
    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 1024


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}


def parse_wrk(out: str) -> dict[str, Any]:
    def find(pattern: str) -> list[str] | None:
        m = re.search(pattern, out, re.M)
        return list(m.groups()) if m else None

    if (rps := find(r"^Requests/sec:\s+([\d.]+)")) is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    p99 = find(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$")
    total = find(r"^\s+(\d+) requests in")
    sock = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    bad = int((find(r"Non-2xx or 3xx responses: (\d+)") or ["0"])[0])
    sock_errors = dict(
        zip(("connect", "read", "write", "timeout"), map(int, sock or ["0"] * 4), strict=True)
    )
    return {
        "rps": float(rps[0]),
        "p99_ms": float(p99[0]) * _UNIT_MS[p99[1]] if p99 else None,
        "requests": int(total[0]) if total else None,
        "errors": bad + sum(sock_errors.values()),
        "non_2xx_3xx": bad,
        "socket_errors": sock_errors,
    }


def wrk_scenario(*extra: str) -> Callable[[Running, argparse.Namespace], dict[str, Any]]:
    """wrk warm-up run (discarded), then the measured run; `extra` = more wrk options."""

    def run(srv: Running, args: argparse.Namespace) -> dict[str, Any]:
        base = [
            "taskset",
            "-c",
            str(args.load_cpu),
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            "--latency",
            *extra,
        ]
        for seconds in (args.warmup, args.duration):
            cmd = [*base, f"-d{seconds}s", f"http://{HOST}:{srv.port}/"]
            proc = subprocess.run(
                cmd, capture_output=True, text=True, check=False, timeout=seconds + 30
            )
            if proc.returncode != 0:
                raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr.strip()}")
        return {**parse_wrk(proc.stdout), "load_command": shlex.join(cmd)}

    return run


REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _recv(sock: socket.socket) -> bytes:
    if not (chunk := sock.recv(65536)):
        raise RuntimeError("server closed the connection before a full response")
    return chunk


def read_response(sock: socket.socket) -> int:
    """Read one complete response (Content-Length or chunked body); return its status."""
    return read_full_response(sock)[0]


def read_full_response(sock: socket.socket) -> tuple[int, bytes]:
    """Read one complete response (Content-Length or chunked body); return status and body."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += _recv(sock)
    head, body = buf.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    if "content-length" in headers:
        while len(body) < int(headers["content-length"]):
            body += _recv(sock)
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while not body.endswith(b"0\r\n\r\n"):  # a hello body has no trailers
            body += _recv(sock)
    else:
        raise RuntimeError("keep-alive response without Content-Length or chunked body")
    return int(status_line.split()[1]), body


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read and no EOF: the server still holds it
    except OSError:
        return False


def idle_memory(srv: Running, args: argparse.Namespace) -> dict[str, Any]:
    n, bad = args.idle, 0
    socks: list[socket.socket] = []
    before = rss_kib(srv.proc.pid)
    try:
        for _ in range(n):
            socks.append(s := socket.create_connection((HOST, srv.port), timeout=10.0))
            s.sendall(REQUEST)
            bad += not 200 <= read_response(s) < 300
        after = rss_kib(srv.proc.pid)
        alive = sum(still_open(s) for s in socks)
    finally:
        for s in socks:
            s.close()
    return {
        "kib_per_conn": (after - before) / n,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "connections": n,
        "open_at_measure": alive,
        "errors": bad + n - alive,
        "load_command": f"bench.py: {n} connections x 1 request {REQUEST!r}, kept idle",
    }


SCENARIOS: dict[str, Scenario] = {
    "keep-alive": Scenario(wrk_scenario(), "rps"),
    "close": Scenario(wrk_scenario("-H", "Connection: close"), "rps"),
    "idle-memory": Scenario(idle_memory, "kib_per_conn"),
}


# --suite master: multi-process servers, 2 workers each ------------------------------------------

WORKERS = "2"
MASTER_BASELINE = "uvicorn-w2"
BUSY_CORES = 0.2  # other processes using more than this during a row make it suspect
SHARED_ACCEPT = "gunicorn-asgi-w2"  # the skewed load's reference: blocked workers stop accepting
ROUND_ROBIN = "prefork-rr-w2"
BALANCED = "prefork-w2"
PREFORK_ARGV = ("{python}", "-m", "prefork", "--workers", WORKERS, "--bind", "{host}:{port}")
PREFORK_APP = "tools/peers/prefork_hello.py:onstream"
GUNICORN_ARGV = ("{venv}/bin/gunicorn", "-w", WORKERS, "--bind", "{host}:{port}")
GUNICORN_TAIL = ("--log-level", "warning", "--chdir", "{repo}")

MASTER_SERVERS: dict[str, ServerDef] = {
    BALANCED: ServerDef(
        (*PREFORK_ARGV, "--log-level", "warning", PREFORK_APP),
        needs="{repo}/prefork/__main__.py",
        pythonpath=True,
        workers=2,
        counts=True,
    ),
    ROUND_ROBIN: ServerDef(
        (*PREFORK_ARGV, "--dispatch", "round-robin", "--log-level", "warning", PREFORK_APP),
        needs="{repo}/prefork/__main__.py",
        pythonpath=True,
        workers=2,
        counts=True,
    ),
    # The example as shipped: it prints a log line per request (to the row's log file). It has
    # no /burn or /pid, so only the keep-alive and close rows.
    "prefork-example-w2": ServerDef(
        (*PREFORK_ARGV, "--log-level", "warning", "examples/hello.py:reply"),
        needs="{repo}/examples/hello.py",
        pythonpath=True,
        workers=2,
    ),
    MASTER_BASELINE: ServerDef(
        (
            "{venv}/bin/uvicorn",
            "--workers",
            WORKERS,
            "--http",
            "h11",
            "--loop",
            "asyncio",
            "--no-access-log",
            "--log-level",
            "warning",
            "--app-dir",
            "{repo}",
            "tools.peers.asgi_routed:app",
            "--host",
            "{host}",
            "--port",
            "{port}",
        ),
        needs="{venv}/bin/uvicorn",
        peer=True,
        pythonpath=True,
        workers=2,
        counts=True,
    ),
    "gunicorn-gthread-w2": ServerDef(
        (
            *GUNICORN_ARGV,
            "-k",
            "gthread",
            "--threads",
            "4",
            *GUNICORN_TAIL,
            "tools.peers.wsgi_hello:app",
        ),
        needs="{venv}/bin/gunicorn",
        peer=True,
        pythonpath=True,
        workers=2,
        counts=True,
    ),
    # gunicorn's own asyncio ASGI worker (gunicorn/workers/gasgi.py), on the shared socket
    SHARED_ACCEPT: ServerDef(
        (
            *GUNICORN_ARGV,
            "-k",
            "asgi",
            "--asgi-loop",
            "asyncio",
            *GUNICORN_TAIL,
            "tools.peers.asgi_routed:app",
        ),
        needs="{venv}/bin/gunicorn",
        peer=True,
        pythonpath=True,
        workers=2,
        counts=True,
    ),
}
# A gunicorn without its own asgi worker: uvicorn's worker class, also a shared accept socket.
SHARED_ACCEPT_FALLBACK = ServerDef(
    (
        *GUNICORN_ARGV,
        "-k",
        "uvicorn.workers.UvicornWorker",
        *GUNICORN_TAIL,
        "tools.peers.asgi_routed:app",
    ),
    needs="{venv}/bin/gunicorn",
    peer=True,
    pythonpath=True,
    workers=2,
    counts=True,
)


def has_gunicorn_asgi(venv: Path) -> bool:
    return any(venv.glob("lib/python*/site-packages/gunicorn/workers/gasgi.py"))


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process and its descendants (reaped ones included)."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
    return total


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children: wrk (taskset execs it)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent running processes (user, nice, system) since boot;
    not irq/softirq time, which the loopback traffic itself may cause."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system)


def wait_quiet(limit: float, threshold: float = 0.15) -> float:
    """Wait up to `limit` seconds for a 1 s window in which the machine is busy for less than
    `threshold` cores (another job's load would skew the row); return the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        before = busy_cpu_s()
        time.sleep(1.0)
        if busy_cpu_s() - before < threshold:
            break
    return time.monotonic() - start


def share(values: list[int]) -> str:
    """[6, 4] -> "60/40" (percent of the total, largest first)."""
    total = sum(values)
    return "/".join(f"{100 * v / total:.0f}" for v in values) if total else "-"


def per_worker(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], workers: int
) -> list[dict[str, int]]:
    """Requests and burns per process during the run, most requests first; a worker that never
    answered has no count file, so the list is padded with zeros up to `workers`."""
    rows = [
        {
            "pid": pid,
            "requests": req - before.get(pid, (0, 0))[0],
            "burns": burns - before.get(pid, (0, 0))[1],
        }
        for pid, (req, burns) in after.items()
    ]
    rows += [{"pid": 0, "requests": 0, "burns": 0}] * (workers - len(rows))
    return sorted(rows, key=lambda r: (-r["requests"], -r["burns"]))


def mp_wrk_scenario(
    *extra: str, connections: str = "connections", skewed: bool = False, scheme: str = "http"
) -> Callable[[Running, argparse.Namespace], dict[str, Any]]:
    """wrk warm-up run (discarded), then the measured run, around which the per-process counts
    and the CPU time of the server (all its processes) and of wrk are read. `connections`: the
    option giving wrk -c; `skewed`: /burn requests in the load (report their split too);
    `scheme`: https for the tls suite."""

    def run(srv: Running, args: argparse.Namespace) -> dict[str, Any]:
        base = [
            "taskset",
            "-c",
            str(args.load_cpu),
            "wrk",
            f"-t{args.threads}",
            f"-c{getattr(args, connections)}",
            "--latency",
            *extra,
        ]
        url = f"{scheme}://{HOST}:{srv.port}/"
        for measured, seconds in ((False, args.warmup), (True, args.duration)):
            cmd = [*base, f"-d{seconds}s", url]
            if measured:
                counts0 = read_counts(srv.counts_dir) if srv.counts_dir else {}
                srv0, wrk0, all0 = tree_cpu_s(srv.proc.pid), children_cpu_s(), busy_cpu_s()
                t0 = time.monotonic()
            proc = subprocess.run(
                cmd, cwd=REPO, capture_output=True, text=True, check=False, timeout=seconds + 30
            )
            if proc.returncode != 0:
                raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr.strip()}")
        elapsed = time.monotonic() - t0
        server_cores = (tree_cpu_s(srv.proc.pid) - srv0) / elapsed
        wrk_cores = (children_cpu_s() - wrk0) / elapsed
        row = {
            **parse_wrk(proc.stdout),
            "server_cores": server_cores,
            "wrk_cores": wrk_cores,
            # Anything else busy on the machine meanwhile (bench.py itself is asleep in wait()).
            "other_cores": max(0.0, (busy_cpu_s() - all0) / elapsed - server_cores - wrk_cores),
            "load_command": shlex.join(cmd),
        }
        if srv.counts_dir:
            workers = per_worker(counts0, read_counts(srv.counts_dir), srv.workers)
            row["per_worker"] = workers
            row["split"] = share([w["requests"] for w in workers])
            if skewed:
                row["burn_split"] = share([w["burns"] for w in workers])
        return row

    return run


PID_REQUEST = b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"


def ask_pid(sock: socket.socket) -> int:
    sock.sendall(PID_REQUEST)
    status, body = read_full_response(sock)
    if status != 200:
        raise RuntimeError(f"GET /pid answered {status}")
    return int(body)


def burst_spread(srv: Running, args: argparse.Namespace) -> dict[str, Any]:
    """--connections keep-alive connections opened back to back, then each asks GET /pid twice
    (the second answer must come from the same worker). Repeated --spread-rounds times."""
    n, rounds, splits, moved = args.connections, [], [], 0
    srv0, own0, all0 = tree_cpu_s(srv.proc.pid), time.process_time(), busy_cpu_s()
    t0 = time.monotonic()
    for _ in range(args.spread_rounds):
        socks: list[socket.socket] = []
        try:
            for _ in range(n):  # the burst: connect only, every request after the last connect
                socks.append(socket.create_connection((HOST, srv.port), timeout=10.0))
            pids = [ask_pid(s) for s in socks]
            moved += sum(ask_pid(s) != pid for s, pid in zip(socks, pids, strict=True))
        finally:
            for s in socks:
                s.close()
        per = sorted(Counter(pids).values(), reverse=True)
        per += [0] * (srv.workers - len(per))
        rounds.append(per)
        splits.append("/".join(map(str, per)))
        time.sleep(0.3)  # let the closes reach the server before the next burst
    ours = tree_cpu_s(srv.proc.pid) - srv0 + time.process_time() - own0
    return {
        "other_cores": max(0.0, (busy_cpu_s() - all0 - ours) / (time.monotonic() - t0)),
        "spread": rounds,
        "split": " ".join(splits),
        "max_share": max(max(r) / n for r in rounds),
        "errors": moved,
        "load_command": f"bench.py: {args.spread_rounds} x ({n} connects back to back, "
        f"then {PID_REQUEST!r} twice on each)",
    }


MASTER_SCENARIOS: dict[str, Scenario] = {
    "keep-alive": Scenario(mp_wrk_scenario(), "rps"),
    "close": Scenario(mp_wrk_scenario("-H", "Connection: close"), "rps"),
    "skew": Scenario(
        mp_wrk_scenario(
            "-H",
            "Connection: close",
            "-s",
            "tools/skew.lua",
            connections="skew_connections",
            skewed=True,
        ),
        "p99_ms",
        baseline=SHARED_ACCEPT,
        counts=True,
    ),
    "skew-ka": Scenario(
        mp_wrk_scenario("-s", "tools/skew.lua", connections="skew_connections", skewed=True),
        "p99_ms",
        baseline=SHARED_ACCEPT,
        counts=True,
    ),
    "spread": Scenario(burst_spread, "", counts=True),  # no ratio: the goal is an even split
}
MASTER_DEFAULT_SCENARIOS = ("keep-alive", "close", "skew", "spread")


# --suite tls: HTTP/2 (h2c, h2 over TLS) and HTTPS HTTP/1.1, one process per server ---------------

H2C_BASELINE = "hypercorn-h2c"
H2_BASELINE = "hypercorn-tls"
TLS_BASELINE = "uvicorn-h11-tls"
PREFORK_SERVE = ("{python}", "tools/peers/prefork_serve.py", "--host", "{host}", "--port", "{port}")
CERT_ARGS = ("--certfile", "{certfile}", "--keyfile", "{keyfile}")  # prefork's and hypercorn's
# no limit on requests per connection (hypercorn's default, 1000, ends h2load's connections)
HYPERCORN_ARGV = (*SERVERS["hypercorn"].argv[:-1], "-c", "tools/peers/hypercorn.toml", ASGI_APP)
UVICORN_ARGV = SERVERS["uvicorn-h11"].argv

TLS_SERVERS: dict[str, ServerDef] = {
    # tls=False, version=None: HTTP/1 and HTTP/2 prior knowledge on one plaintext port
    "prefork-h2c": ServerDef(
        (*PREFORK_SERVE, "--tls", "false"),
        needs="{repo}/tools/peers/prefork_serve.py",
        pythonpath=True,
    ),
    # hypercorn sniffs the HTTP/2 preface on plain TCP (h2c prior knowledge)
    H2C_BASELINE: ServerDef(HYPERCORN_ARGV, needs="{venv}/bin/hypercorn", peer=True),
    # tls=True, version=None, the bench's certificate; ALPN h2, http/1.1, http/1.0
    "prefork-tls": ServerDef(
        (*PREFORK_SERVE, "--tls", "true", *CERT_ARGS),
        needs="{repo}/tools/peers/prefork_serve.py",
        pythonpath=True,
        https=True,
    ),
    TLS_BASELINE: ServerDef(
        (*UVICORN_ARGV, "--ssl-certfile", "{certfile}", "--ssl-keyfile", "{keyfile}"),
        needs="{venv}/bin/uvicorn",
        peer=True,
        https=True,
    ),
    # ALPN h2 and http/1.1 (hypercorn's defaults)
    H2_BASELINE: ServerDef(
        (*HYPERCORN_ARGV, *CERT_ARGS), needs="{venv}/bin/hypercorn", peer=True, https=True
    ),
}

_H2LOAD_RPS = re.compile(r"^finished in [\d.]+m?s, ([\d.]+) req/s", re.M)
_H2LOAD_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.M,
)
_H2LOAD_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
_H2LOAD_MEAN = re.compile(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", re.M)


def parse_h2load(out: str) -> dict[str, Any]:
    """h2load's summary: req/s, the request counts, status classes, the protocol it spoke."""
    rps, req = _H2LOAD_RPS.search(out), _H2LOAD_REQUESTS.search(out)
    if rps is None or req is None:
        raise RuntimeError(f"cannot parse h2load output:\n{out[-3000:]}")
    status = _H2LOAD_STATUS.search(out)
    mean = _H2LOAD_MEAN.search(out)
    proto = re.search(r"^Application protocol: (\S+)", out, re.M)
    total, started, done, succeeded, failed, errored, timeout = map(int, req.groups())
    codes: dict[str, int] = {}
    if status:
        codes = dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, status.groups()), strict=True))
    return {
        "rps": float(rps.group(1)),
        "mean_ms": float(mean.group(1)) * _UNIT_MS[mean.group(2)] if mean else None,
        "requests": total,
        "h2load": {
            "started": started,
            "done": done,
            "succeeded": succeeded,
            "failed": failed,
            "errored": errored,
            "timeout": timeout,
            "status": codes,
        },
        # every request asked for and not answered 2xx: failed, errored, timed out, not done
        "errors": total - codes.get("2xx", succeeded),
        "protocol": proto.group(1) if proto else None,
    }


def h2load_scenario(scheme: str) -> Callable[[Running, argparse.Namespace], dict[str, Any]]:
    """h2load warm-up (--h2load-warmup requests, discarded), then --h2load-requests requests:
    --h2-connections connections x --h2-streams concurrent streams, one thread. http:// is h2c
    prior knowledge (h2load's default), https:// is TLS with ALPN h2 (the protocol spoken is
    checked). The server's, h2load's and everyone else's CPU are read around the measured run."""
    want = "h2c" if scheme == "http" else "h2"

    def run(srv: Running, args: argparse.Namespace) -> dict[str, Any]:
        base = [
            "taskset",
            "-c",
            str(args.load_cpu),
            "h2load",
            "-t1",
            f"-c{args.h2_connections}",
            f"-m{args.h2_streams}",
            f"-N{args.h2load_idle_timeout:g}s",  # a stalled connection ends as errors, not a hang
        ]
        url = f"{scheme}://{HOST}:{srv.port}/"
        for measured, n in ((False, args.h2load_warmup), (True, args.h2load_requests)):
            cmd = [*base, f"-n{n}", url]
            if measured:
                srv0, load0, all0 = tree_cpu_s(srv.proc.pid), children_cpu_s(), busy_cpu_s()
                t0 = time.monotonic()
            proc = subprocess.run(
                cmd, capture_output=True, text=True, check=False, timeout=args.h2load_timeout
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"h2load exited {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}"
                )
        elapsed = time.monotonic() - t0
        server_cores = (tree_cpu_s(srv.proc.pid) - srv0) / elapsed
        load_cores = (children_cpu_s() - load0) / elapsed
        row = {
            **parse_h2load(proc.stdout),
            "server_cores": server_cores,
            "wrk_cores": load_cores,  # the load generator's (h2load here)
            "other_cores": max(0.0, (busy_cpu_s() - all0) / elapsed - server_cores - load_cores),
            "load_command": shlex.join(cmd),
        }
        if row["protocol"] != want:
            row["errors"] = row["requests"]
            row["error_lines"] = [f"h2load spoke {row['protocol']!r}, not {want}"]
        if row["errors"]:  # keep what h2load said about them (it reports errors on both streams)
            lines = [
                ln
                for ln in (proc.stderr + proc.stdout).splitlines()
                if ln.strip()
                and not ln.startswith(("progress:", "spawning thread", "starting benchmark"))
            ]
            row.setdefault("error_lines", []).extend(lines[:40])
        return row

    return run


TLS_SCENARIOS: dict[str, Scenario] = {
    "h2c": Scenario(
        h2load_scenario("http"), "rps", baseline=H2C_BASELINE, servers=("prefork-h2c", H2C_BASELINE)
    ),
    "h2-tls": Scenario(
        h2load_scenario("https"), "rps", baseline=H2_BASELINE, servers=("prefork-tls", H2_BASELINE)
    ),
    "https-keep-alive": Scenario(
        mp_wrk_scenario(scheme="https"),
        "rps",
        servers=("prefork-tls", TLS_BASELINE, H2_BASELINE),
    ),
    # wrk does not resume TLS sessions: each request is a new connection and a full handshake
    "https-close": Scenario(
        mp_wrk_scenario("-H", "Connection: close", scheme="https"),
        "rps",
        servers=("prefork-tls", TLS_BASELINE, H2_BASELINE),
    ),
}
TLS_DURATION = 8  # wrk seconds: the whole suite in about 3 minutes


def write_cert(directory: Path) -> tuple[Path, Path]:
    """One self-signed P-256 certificate for 127.0.0.1 and its key (PEM, unencrypted) for every
    server of the tls suite: the same key type as prefork's generated one. Temporary files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.touch(mode=0o600)
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


def tls_goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 3 item 7's goals against this run's rows (reported, never the exit status)."""

    def ratio(server: str, scen: str) -> float | None:
        for r in rows:
            if r["server"] == server and r["scenario"] == scen and "error" not in r:
                return r.get("ratio_to_baseline")
        return None

    goals = []
    for scen, server, base, target in (
        ("h2c", "prefork-h2c", H2C_BASELINE, 2.0),
        ("h2-tls", "prefork-tls", H2_BASELINE, 2.0),
        ("https-keep-alive", "prefork-tls", TLS_BASELINE, 1.3),
    ):
        value = ratio(server, scen)
        goals.append(
            {
                "goal": f"{scen}: {server} req/s over {base}'s",
                "value": value,
                "target": f">= {target:.2f}x",
                "met": None if value is None else value >= target,
            }
        )
    value = ratio("prefork-tls", "https-close")
    goals.append(
        {
            "goal": f"https-close: prefork-tls new TLS connections/s over {TLS_BASELINE}'s",
            "value": value,
            "target": "none, reported",
            "met": None,
        }
    )
    return goals


def print_tls_table(rows: list[dict[str, Any]], scenarios: list[str]) -> None:
    head = (
        "scenario",
        "server",
        "proto",
        "req/s",
        "p99 ms",
        "errors",
        "srv cores",
        "load cores",
        "other",
        "ratio",
        "vs",
    )
    ordered = sorted(rows, key=lambda r: scenarios.index(r["scenario"]))
    render(
        [head]
        + [
            (r["scenario"], r["server"], "FAILED: " + r["error"])
            if "error" in r
            else (
                r["scenario"],
                r["server"],
                r.get("protocol") or "http/1.1",
                fmt(r.get("rps"), ",.0f"),
                fmt(r.get("p99_ms"), ".2f"),
                fmt(r.get("errors"), "d"),
                fmt(r.get("server_cores"), ".2f"),
                fmt(r.get("wrk_cores"), ".2f"),
                fmt(r.get("other_cores"), ".2f"),
                fmt(r.get("ratio_to_baseline"), ".2f", "x"),
                TLS_SCENARIOS[r["scenario"]].baseline or TLS_BASELINE,
            )
            for r in ordered
        ]
    )
    print(
        """
proto: what the load generator spoke (h2load reports it; wrk speaks HTTP/1.1 without ALPN).
p99: wrk's (h2load reports no percentiles). errors: h2load's requests not answered 2xx (failed,
  errored, timed out), wrk's socket errors and non-2xx answers. srv / load cores: CPU seconds
  per second of the measured run, the server's and the load generator's; other: the rest of
  the machine's busy CPU meanwhile. ratio: req/s over the `vs` server's, same scenario."""
    )
    for r in ordered:
        if r.get("error_lines"):
            print(f"\n{r['server']} / {r['scenario']}: h2load reported")
            for line in r["error_lines"]:
                print(f"    {line}")


def tls_notes(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[str]:
    notes = [
        f"{os.cpu_count()} CPUs. Each server is one process pinned with taskset -c "
        f"{args.server_cpu}; the load generator (h2load -t1, wrk -t{args.threads}) with "
        f"taskset -c {args.load_cpu}. Loopback only.",
        "One self-signed P-256 (ECDSA) certificate and key, made at the start in a temporary "
        "directory and deleted at the end, serve every TLS server (prefork through an OpenSSL "
        "context with prefork.protocol.tls.configure and ALPN h2, http/1.1, http/1.0).",
        f"h2load: {args.h2load_warmup} requests of warm-up, then {args.h2load_requests} measured "
        f"({args.h2_connections} connections x {args.h2_streams} streams). wrk: {args.warmup} s "
        f"warm-up, {args.duration} s measured, -c{args.connections}. A fresh server per row.",
        "https-close: wrk -H 'Connection: close' opens a new connection per request and does not "
        "resume TLS sessions, so each request costs a full handshake (TLS 1.3).",
        "hypercorn runs with -c tools/peers/hypercorn.toml: keep_alive_max_requests lifted from "
        "1000 (after 1000 requests hypercorn closes the connection with GOAWAY; h2load does not "
        "reconnect, so the rest of its streams fail), as prefork and uvicorn have no such limit.",
        "Apps: prefork tools/peers/prefork_serve.py, the peers tools/peers/asgi_hello.py: "
        "200 text/plain 'Hello world!\\n' with a content-length.",
    ]
    if saturated := [
        f"{r['server']} / {r['scenario']}" for r in rows if r.get("wrk_cores", 0.0) > 0.9
    ]:
        notes.append(
            "The load generator used more than 0.9 of its core (a TLS client pays for each "
            "handshake too), so these rows may understate the server: " + ", ".join(saturated)
        )
    if busy := [
        f"{r['server']} / {r['scenario']}" for r in rows if r.get("other_cores", 0.0) > BUSY_CORES
    ]:
        notes.append(
            f"WARNING: other processes used > {BUSY_CORES} cores during "
            + ", ".join(busy)
            + ": rerun those rows on a quiet machine"
        )
    return notes


@dataclass(frozen=True)
class Suite:
    servers: dict[str, ServerDef]
    scenarios: dict[str, Scenario]
    default_scenarios: tuple[str, ...]
    baseline: str


SUITES = {
    "single": Suite(SERVERS, SCENARIOS, tuple(SCENARIOS), BASELINE),
    "master": Suite(MASTER_SERVERS, MASTER_SCENARIOS, MASTER_DEFAULT_SCENARIOS, MASTER_BASELINE),
    "tls": Suite(TLS_SERVERS, TLS_SCENARIOS, tuple(TLS_SCENARIOS), TLS_BASELINE),
}


def ensure_peers_venv(venv: Path) -> None:
    if all((venv / "bin" / pkg).exists() for pkg in PEER_PACKAGES):
        return
    print(f"# creating peers venv {venv} ({' '.join(PEER_PACKAGES)})")
    if not (venv / "bin" / "python").exists():
        python3 = shutil.which("python3") or sys.executable
        subprocess.run([python3, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
        check=True,
        timeout=900,
    )


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        print(f"# warning: RLIMIT_NOFILE soft={soft} hard={hard} < {need}", file=sys.stderr)


def add_ratios(rows: list[dict[str, Any]], suite: Suite = SUITES["single"]) -> None:
    """ratio_to_baseline: the scenario's metric over its baseline server's (the suite's unless
    the scenario names one); skew rows also get p99_vs_round_robin (over prefork-rr-w2's)."""

    def ref(server: str, scen: str, metric: str) -> Any:
        return next(
            (r.get(metric) for r in rows if r["server"] == server and r["scenario"] == scen), None
        )

    for r in rows:
        scenario = suite.scenarios[r["scenario"]]
        metric = scenario.metric
        base, val = ref(scenario.baseline or suite.baseline, r["scenario"], metric), r.get(metric)
        r["ratio_to_baseline"] = val / base if metric and val is not None and base else None
        if suite is SUITES["master"] and scenario.baseline == SHARED_ACCEPT:
            rr = ref(ROUND_ROBIN, r["scenario"], "p99_ms")
            r["p99_vs_round_robin"] = val / rr if val is not None and rr else None


def fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def render(table: list[tuple[str, ...]]) -> None:
    """Print a header row and data rows; a 3-cell row is a failure line (not measured)."""
    head = table[0]
    widths = [
        max(len(row[i]) for row in table if i < len(row) and len(row) > 3) for i in range(len(head))
    ]
    for row in table:
        print(
            "  ".join(
                c.ljust(w) if i < 2 or len(row) == 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=False))
            ).rstrip()
        )


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("server", "scenario", "req/s", "p99 ms", "errors", "KiB/conn", f"vs {BASELINE}")
    render(
        [head]
        + [
            (r["server"], r["scenario"], "FAILED: " + r["error"])
            if "error" in r
            else (
                r["server"],
                r["scenario"],
                fmt(r.get("rps"), ",.0f"),
                fmt(r.get("p99_ms"), ".2f"),
                fmt(r.get("errors"), "d"),
                fmt(r.get("kib_per_conn"), ".1f"),
                fmt(r.get("ratio_to_baseline"), ".2f", "x"),
            )
            for r in rows
        ]
    )


def print_master_table(rows: list[dict[str, Any]]) -> None:
    head = (
        "server",
        "scenario",
        "req/s",
        "p99 ms",
        "errors",
        "per-worker",
        "burns",
        "srv cores",
        "wrk cores",
        "other",
        "ratio",
        "p99 vs rr",
    )
    render(
        [head]
        + [
            (r["server"], r["scenario"], "FAILED: " + r["error"])
            if "error" in r
            else (
                r["server"],
                r["scenario"],
                fmt(r.get("rps"), ",.0f"),
                fmt(r.get("p99_ms"), ".2f"),
                fmt(r.get("errors"), "d"),
                r.get("split") or "-",
                r.get("burn_split") or "-",
                fmt(r.get("server_cores"), ".2f"),
                fmt(r.get("wrk_cores"), ".2f"),
                fmt(r.get("other_cores"), ".2f"),
                fmt(r.get("ratio_to_baseline"), ".2f", "x"),
                fmt(r.get("p99_vs_round_robin"), ".2f", "x"),
            )
            for r in rows
        ]
    )
    print(
        f"""
per-worker: % of the run's requests per worker, largest first (close and skew: one connection
  per request, so also the share of connections); spread: connections per worker, per burst.
burns: the same for the /burn requests. srv cores / wrk cores: CPU seconds per second of the
  measured run, the server's processes together (master included) and wrk's; other: the rest
  of the machine's busy CPU meanwhile (anything else running skews the row).
ratio: req/s over {MASTER_BASELINE}'s (keep-alive, close); p99 over {SHARED_ACCEPT}'s (skew,
  below 1 is better). p99 vs rr: p99 over {ROUND_ROBIN}'s (prefork --dispatch round-robin).
errors: wrk's socket errors and non-2xx answers; spread: connections whose second /pid came
  from another process."""
    )


def master_goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 4 item 9's goals against this run's rows (reported, never the exit status)."""

    def row(server: str, scen: str) -> dict[str, Any]:
        return next(
            (
                r
                for r in rows
                if r["server"] == server and r["scenario"] == scen and "error" not in r
            ),
            {},
        )

    goals = []

    def goal(text: str, value: float | None, target: str, met: bool | None) -> None:
        goals.append({"goal": text, "value": value, "target": target, "met": met})

    ratio = row(BALANCED, "close").get("ratio_to_baseline")
    goal(
        f"close: {BALANCED} new connections/s over {MASTER_BASELINE}'s",
        ratio,
        ">= 1.30x",
        None if ratio is None else ratio >= 1.3,
    )
    ratio = row(BALANCED, "skew").get("ratio_to_baseline")
    goal(
        f"skew: {BALANCED} p99 over {SHARED_ACCEPT}'s (shared accept)",
        ratio,
        "< 1.00x",
        None if ratio is None else ratio < 1.0,
    )
    ratio = row(BALANCED, "skew").get("p99_vs_round_robin")
    goal(
        f"skew: {BALANCED} p99 over {ROUND_ROBIN}'s (round-robin)",
        ratio,
        "<= 0.50x",
        None if ratio is None else ratio <= 0.5,
    )
    spread = row(BALANCED, "spread").get("spread")
    gap = max(max(r) - min(r) for r in spread) if spread else None
    goal(
        f"spread: {BALANCED} burst, largest gap between workers (connections)",
        gap,
        "<= 2 (even)",
        None if gap is None else gap <= 2,
    )
    return goals


def print_goals(goals: list[dict[str, Any]], source: str = "issue 4, item 9") -> None:
    print(f"\nGoals ({source}), this run:")
    for g in goals:
        value = "-" if g["value"] is None else f"{g['value']:.2f}"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[g["met"]]
        if g["met"] is None and g["value"] is not None:
            verdict = "reported"  # a row with no goal
        print(f"  {g['goal']}: {value} (goal {g['target']}): {verdict}")


def master_notes(
    args: argparse.Namespace, servers: dict[str, ServerDef], rows: list[dict[str, Any]]
) -> list[str]:
    shared = " ".join(servers[SHARED_ACCEPT].argv[5:7]) if SHARED_ACCEPT in servers else "-"
    notes = [
        f"{os.cpu_count()} CPUs. Every server (master and workers) is pinned with taskset -c "
        f"{args.mp_server_cpus}; wrk -t{args.threads} with taskset -c {args.load_cpu}. With "
        "2 workers the server needs both cores, so wrk competes with it on its core: the srv/wrk "
        "cores columns show who got the CPU.",
        "The apps (tools/peers/work.py) do the same work everywhere: hello; /burn spins on "
        "time.thread_time() until 5 ms of the thread's CPU are used; /pid answers the pid.",
        "Per-worker counts: each process mmaps BENCH_COUNT_DIR/<pid>.cnt and updates it per "
        "request; bench.py reads the files before and after the measured run (no exit hook).",
        f"skew: wrk -c{args.skew_connections} with Connection: close and tools/skew.lua (each "
        "request is /burn with probability 1/5, seeded: the same sequence for every server), so "
        "each request is a new connection that the server has to place; with keep-alive, "
        "connections are placed once, at the start.",
        f"shared accept peer: gunicorn {shared} (both workers accept on the inherited socket).",
        f"Measured run {args.duration} s after a {args.warmup} s warm-up; a fresh server per row.",
    ]
    if lazy := [
        f"{r['server']} / {r['scenario']}"
        for r in rows
        if r.get("server_cores") is not None and r["server_cores"] + r["wrk_cores"] < 0.5
    ]:
        notes.append(
            "Less than half a core busy (server + wrk), so bound by latency, not CPU: "
            + ", ".join(lazy)
        )
    if busy := [
        f"{r['server']} / {r['scenario']}" for r in rows if r.get("other_cores", 0) > BUSY_CORES
    ]:
        notes.append(
            f"WARNING: other processes used > {BUSY_CORES} cores during "
            + ", ".join(busy)
            + ": rerun those rows on a quiet machine"
        )
    return notes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add(
        "--suite",
        choices=tuple(SUITES),
        default="single",
        help="single: one process per server (default); master: 2 workers per server; tls: "
        "HTTP/2 (h2load) and HTTPS HTTP/1.1, one process per server",
    )
    add(
        "--servers",
        help="comma-separated servers (default: the suite's: "
        + "; ".join(f"{k}: {','.join(v.servers)}" for k, v in SUITES.items())
        + "); a server whose program is missing is skipped",
    )
    add(
        "--scenarios",
        help="comma-separated (default: "
        + "; ".join(f"{k}: {','.join(v.default_scenarios)}" for k, v in SUITES.items())
        + "; master also has skew-ka)",
    )
    add(
        "--duration",
        type=int,
        help=f"seconds of each measured wrk run (10; tls suite {TLS_DURATION})",
    )
    add("--warmup", type=int, default=2, help="seconds of the wrk warm-up run (2)")
    add("--connections", type=int, default=64, help="wrk -c connections (64)")
    add("--threads", type=int, default=1, help="wrk -t threads (1)")
    add("--idle", type=int, default=1000, metavar="N", help="idle-memory connections (1000)")
    add("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    add(
        "--peers-venv",
        type=Path,
        default=Path("/opt/prefork-peers/venv"),
        metavar="DIR",
        help="venv with uvicorn/hypercorn/gunicorn, created if missing (%(default)s)",
    )
    add("--server-cpu", type=int, default=0, metavar="CPU", help="server's CPU (0)")
    add("--load-cpu", type=int, default=1, metavar="CPU", help="wrk's CPU (1)")
    add(
        "--mp-server-cpus",
        default="0,1",
        metavar="LIST",
        help="master suite: taskset CPU list of the whole server (%(default)s)",
    )
    add(
        "--skew-connections",
        type=int,
        default=8,
        metavar="N",
        help="master suite: wrk -c of the skewed load (8: 4 per worker, a short queue, where "
        "placing each connection matters; at 64 every worker is always deep in work)",
    )
    add(
        "--spread-rounds",
        type=int,
        default=3,
        metavar="N",
        help="master suite: bursts of --connections connections in the spread scenario (3)",
    )
    add(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="before each row, wait up to S seconds for a second in which other processes use "
        "< 0.15 cores (default 0: don't wait); for shared machines",
    )
    add(
        "--retry-busy",
        type=int,
        default=0,
        metavar="N",
        help=f"master suite: run a row again, up to N times, when other processes used more than "
        f"{BUSY_CORES} cores during its measured run (default 0); the last attempt is kept",
    )
    add(
        "--h2load-requests",
        type=int,
        default=50000,
        metavar="N",
        help="tls suite: h2load -n of the measured run (%(default)s)",
    )
    add(
        "--h2load-warmup",
        type=int,
        default=5000,
        metavar="N",
        help="tls suite: h2load -n of the warm-up run, discarded (%(default)s)",
    )
    add("--h2-connections", type=int, default=16, metavar="N", help="h2load -c (%(default)s)")
    add("--h2-streams", type=int, default=10, metavar="N", help="h2load -m (%(default)s)")
    add(
        "--h2load-idle-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="tls suite: h2load -N, closes a connection idle this long (%(default)s)",
    )
    add(
        "--h2load-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="tls suite: seconds an h2load run may take before it is killed (%(default)s)",
    )
    add(
        "--startup-timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="seconds a server gets to answer GET / (20)",
    )
    args = p.parse_args(argv)
    suite = SUITES[args.suite]
    if args.duration is None:
        args.duration = TLS_DURATION if args.suite == "tls" else 10
    for opt, known, default in (
        ("servers", suite.servers, tuple(suite.servers)),
        ("scenarios", suite.scenarios, suite.default_scenarios),
    ):
        given = getattr(args, opt)
        chosen = [x.strip() for x in given.split(",") if x.strip()] if given else list(default)
        if unknown := [x for x in chosen if x not in known]:
            p.error(
                f"unknown --{opt} for --suite {args.suite}: {', '.join(unknown)} "
                f"(choices: {', '.join(known)})"
            )
        setattr(args, opt, chosen)
    if (
        min(
            args.idle,
            args.duration,
            args.warmup,
            args.connections,
            args.threads,
            args.skew_connections,
            args.spread_rounds,
            args.h2load_requests,
            args.h2load_warmup,
            args.h2_connections,
            args.h2_streams,
        )
        < 1
    ):
        p.error(
            "--idle, --duration, --warmup, --connections, --threads, --skew-connections, "
            "--spread-rounds, --h2load-requests, --h2load-warmup, --h2-connections and "
            "--h2-streams must be >= 1"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every `finally` stops its server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    suite = SUITES[args.suite]
    master = suite is SUITES["master"]
    tls = suite is SUITES["tls"]
    servers = dict(suite.servers)
    # Progress lines and a failing server's stderr then come out in order.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    tools = ("taskset", "wrk", *(("h2load",) if tls else ()))
    if missing := [t for t in tools if shutil.which(t) is None]:
        print(f"error: missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    raise_nofile(args.idle + 100)  # before any server starts: they inherit it
    if any(servers[s].peer for s in args.servers):
        ensure_peers_venv(args.peers_venv)
    if master and SHARED_ACCEPT in args.servers and not has_gunicorn_asgi(args.peers_venv):
        print(f"# {SHARED_ACCEPT}: this gunicorn has no asgi worker; using UvicornWorker")
        servers[SHARED_ACCEPT] = SHARED_ACCEPT_FALLBACK
    values = {
        "python": sys.executable,
        "venv": str(args.peers_venv),
        "repo": str(REPO),
        "host": HOST,
    }
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    failed: list[str] = []
    not_applicable: list[str] = []
    with tempfile.TemporaryDirectory(prefix="prefork-bench-") as tmp:
        if tls:  # one certificate and key for every server, deleted with `tmp`
            certfile, keyfile = write_cert(Path(tmp))
            values |= {"certfile": str(certfile), "keyfile": str(keyfile)}
        for name in args.servers:
            if not Path(need := servers[name].needs.format(**values)).exists():
                skipped[name] = f"{need} does not exist"
                print(f"# skipping {name}: {skipped[name]}")
                continue
            for scen in args.scenarios:
                if suite.scenarios[scen].servers and name not in suite.scenarios[scen].servers:
                    continue  # by design (the tls suite's per-protocol servers)
                if suite.scenarios[scen].counts and not servers[name].counts:
                    not_applicable.append(f"{name} / {scen}")
                    continue
                row = None
                for attempt in range(1, args.retry_busy + 2):
                    waited = wait_quiet(args.quiet_wait) if args.quiet_wait else 0.0
                    port = free_port()
                    print(f"# {name} / {scen} on port {port}")
                    log = Path(tmp, f"{name}-{scen}-{attempt}.log")
                    cpus = args.mp_server_cpus if master else None
                    try:
                        with running(
                            servers[name], {**values, "port": str(port)}, log, args, cpus
                        ) as srv:
                            try:
                                row = suite.scenarios[scen].run(srv, args)
                            except Exception as exc:  # a failed measurement, not a failed start
                                row = {"error": f"{type(exc).__name__}: {exc}"}
                    except StartError as exc:
                        print(f"error: {name} failed to start: {exc}", file=sys.stderr)
                        failed.append(name)
                        row = None
                        break
                    row = {
                        "server": name,
                        "scenario": scen,
                        "port": port,
                        "server_command": srv.command,
                        **row,
                        **({"quiet_wait_s": round(waited, 1)} if args.quiet_wait else {}),
                        **({"attempts": attempt} if args.retry_busy else {}),
                    }
                    if tls and "error" not in row:
                        print(
                            f"#   {fmt(row.get('rps'), ',.0f')} req/s, "
                            f"{row.get('protocol') or 'http/1.1'}, errors {row.get('errors')}"
                            + (
                                ", h2load: {failed} failed, {errored} errored, {timeout} "
                                "timeout".format(**row["h2load"])
                                if "h2load" in row
                                else ""
                            )
                        )
                        for line in row.get("error_lines", []):
                            print(f"#     {line}")
                    if master and "error" not in row:
                        print(
                            f"#   {fmt(row.get('rps'), ',.0f')} req/s, p99 "
                            f"{fmt(row.get('p99_ms'), '.2f')} ms, per-worker "
                            f"{row.get('split') or '-'}, other {fmt(row.get('other_cores'), '.2f')}"
                        )
                    if row.get("other_cores", 0.0) <= BUSY_CORES:
                        break
                    print(f"# other processes used {row['other_cores']:.2f} cores meanwhile")
                if row is None:
                    break
                rows.append(row)
    add_ratios(rows, suite)
    print()
    if master:
        print_master_table(rows)
        goals = master_goals(rows)
        print_goals(goals)
        notes = master_notes(args, servers, rows)
        print("\nNotes:")
        for note in notes:
            print(f"  - {note}")
    elif tls:
        print_tls_table(rows, args.scenarios)
        goals = tls_goals(rows)
        print_goals(goals, "issue 3, item 7")
        notes = tls_notes(args, rows)
        print("\nNotes:")
        for note in notes:
            print(f"  - {note}")
    else:
        print_table(rows)
    print(
        "\nCommands (cwd = repo root; PORT = a fresh free port per row"
        + ("; TMP = the temporary directory with cert.pem and key.pem" if tls else "")
        + "):"
    )
    cmds = (
        re.sub(rf"\b{r['port']}\b", "PORT", r[k]).replace(tmp, "TMP")
        for r in rows
        for k in ("server_command", "load_command")
        if k in r
    )
    for cmd in dict.fromkeys(cmds):
        print(f"  $ {cmd}")
    if not_applicable:
        print(f"not applicable (the app has no /burn, /pid, counts): {', '.join(not_applicable)}")
    for name, why in [*skipped.items(), *((f, "failed to start") for f in failed)]:
        print(f"{name}: {why}")
    if args.json:
        report = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "suite": args.suite,
            "baseline": suite.baseline,
            "skipped": skipped,
            "failed_to_start": failed,
            "results": rows,
        }
        if master:
            report |= {"not_applicable": not_applicable, "goals": goals, "notes": notes}
        if tls:
            report |= {"goals": goals, "notes": notes}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
