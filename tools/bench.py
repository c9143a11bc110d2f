#!/usr/bin/env python3
"""Side-by-side HTTP/1.1 benchmark of prefork against uvicorn (h11) and hypercorn.

Each server runs as ONE process pinned to --server-cpu (taskset), started afresh for every
scenario; wrk is pinned to --load-cpu. Scenarios:
  keep-alive   wrk -t1 -c64 --latency over persistent connections (2 s warm-up first)
  close        the same with "Connection: close": one TCP connection per request
  idle-memory  N connections, one keep-alive request each, left idle: server RSS
               (children included) (after - before) / N
It measures, it doesn't judge: exit 0 unless a server fails to start (1) or wrk/taskset is
missing (2). Ratios are against uvicorn-h11. To extend (h2load, TLS, multi-worker rows), add a
ServerDef to SERVERS and/or a Scenario to SCENARIOS.
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
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

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


@dataclass(frozen=True)
class Scenario:
    run: Callable[[Running, argparse.Namespace], dict[str, Any]]
    metric: str  # result key compared with the baseline in the ratio column


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Poll with a real GET / until a 2xx answer, the process exits, or the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
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


@contextlib.contextmanager
def running(
    sdef: ServerDef, values: dict[str, str], log: Path, args: argparse.Namespace
) -> Iterator[Running]:
    port = int(values["port"])
    full = ["taskset", "-c", str(args.server_cpu), *sdef.render(**values)]
    env = dict(os.environ)
    if sdef.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            full, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        try:
            wait_ready(proc, port, args.startup_timeout)
        except StartError as exc:
            output = log.read_text(errors="replace")[-4000:]
            raise StartError(f"{exc}\n$ {shlex.join(full)}\n{output}") from None
        yield Running(port, proc, shlex.join(full))
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
    return int(status_line.split()[1])


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


def add_ratios(rows: list[dict[str, Any]]) -> None:
    base = {r["scenario"]: r for r in rows if r["server"] == BASELINE}
    for r in rows:
        metric = SCENARIOS[r["scenario"]].metric
        ref, val = base.get(r["scenario"], {}).get(metric), r.get(metric)
        r["ratio_to_baseline"] = val / ref if val is not None and ref else None


def fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ("server", "scenario", "req/s", "p99 ms", "errors", "KiB/conn", f"vs {BASELINE}")
    table = [head] + [
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated servers "
        "(default: %(default)s); a server whose program is missing is skipped",
    )
    add("--scenarios", default=",".join(SCENARIOS), help="comma-separated (default: %(default)s)")
    add("--duration", type=int, default=10, help="seconds of each measured wrk run (10)")
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
        "--startup-timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="seconds a server gets to answer GET / (20)",
    )
    args = p.parse_args(argv)
    for opt, known in (("servers", SERVERS), ("scenarios", SCENARIOS)):
        chosen = [x.strip() for x in getattr(args, opt).split(",") if x.strip()]
        if unknown := [x for x in chosen if x not in known]:
            p.error(f"unknown --{opt}: {', '.join(unknown)} (choices: {', '.join(known)})")
        setattr(args, opt, chosen)
    if min(args.idle, args.duration, args.warmup, args.connections, args.threads) < 1:
        p.error("--idle, --duration, --warmup, --connections and --threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Progress lines and a failing server's stderr then come out in order.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if missing := [t for t in ("taskset", "wrk") if shutil.which(t) is None]:
        print(f"error: missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    raise_nofile(args.idle + 100)  # before any server starts: they inherit it
    if any(SERVERS[s].peer for s in args.servers):
        ensure_peers_venv(args.peers_venv)
    values = {
        "python": sys.executable,
        "venv": str(args.peers_venv),
        "repo": str(REPO),
        "host": HOST,
    }
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="prefork-bench-") as tmp:
        for name in args.servers:
            if not Path(need := SERVERS[name].needs.format(**values)).exists():
                skipped[name] = f"{need} does not exist"
                print(f"# skipping {name}: {skipped[name]}")
                continue
            for scen in args.scenarios:
                port = free_port()
                print(f"# {name} / {scen} on port {port}")
                log = Path(tmp, f"{name}-{scen}.log")
                try:
                    with running(SERVERS[name], {**values, "port": str(port)}, log, args) as srv:
                        try:
                            row = SCENARIOS[scen].run(srv, args)
                        except Exception as exc:  # a failed measurement, not a failed start
                            row = {"error": f"{type(exc).__name__}: {exc}"}
                except StartError as exc:
                    print(f"error: {name} failed to start: {exc}", file=sys.stderr)
                    failed.append(name)
                    break
                rows.append(
                    {
                        "server": name,
                        "scenario": scen,
                        "port": port,
                        "server_command": srv.command,
                        **row,
                    }
                )
    add_ratios(rows)
    print()
    print_table(rows)
    print("\nCommands (cwd = repo root; PORT = a fresh free port per row):")
    cmds = (
        re.sub(rf"\b{r['port']}\b", "PORT", r[k])
        for r in rows
        for k in ("server_command", "load_command")
        if k in r
    )
    for cmd in dict.fromkeys(cmds):
        print(f"  $ {cmd}")
    for name, why in [*skipped.items(), *((f, "failed to start") for f in failed)]:
        print(f"{name}: {why}")
    if args.json:
        report = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "baseline": BASELINE,
            "skipped": skipped,
            "failed_to_start": failed,
            "results": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
