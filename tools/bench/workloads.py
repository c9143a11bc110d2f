"""wrk and h2load runs and the parsing of their output."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from typing import Any

from tools.bench.measure import busy_cpu_s, children_cpu_s, per_worker, share, tree_cpu_s
from tools.bench.process import Running
from tools.bench.servers import HOST, REPO
from tools.peers.work import read_counts

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
            # Anything else busy on the machine meanwhile (tools/bench itself is asleep in wait()).
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
