"""--suite peers: its table, its goals (issue 13 item 7, reported, never the exit status) and
its notes."""

from __future__ import annotations

import argparse
import os
import subprocess
from typing import Any

from tools.bench.goals import _dist_versions, cpu_us_per_request, measured_row
from tools.bench.measure import busy_notes
from tools.bench.peers_servers import FAST, FAST_W2, LUA, PURE
from tools.bench.servers import BASELINE

# (scenario, server, the server it is compared with, target, at most?)
PEERS_GOALS = (
    ("keep-alive", "prefork", FAST, 1.2, False),
    ("keep-alive", "prefork", LUA, 2.0, False),
    ("close", "prefork", FAST, 1.0, False),
    ("close", PURE, BASELINE, 1.3, False),
    ("keep-alive-w2", "prefork-w2", FAST_W2, 1.0, False),
    ("h2c", "prefork", LUA, 0.75, False),
    ("idle-memory", "prefork", BASELINE, 0.5, True),  # KiB per idle connection (issue 13 item 4)
)
WORKER_RSS_MIB = 15.0  # an idle worker's RSS (issue 13 item 4)
PEER_DISTS = ("uvicorn", "httptools", "uvloop", "gunicorn", "granian", "h2")


def fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def peers_table(rows: list[dict[str, Any]], scenarios: list[str]) -> list[tuple[str, ...]]:
    """The header and the rows grouped by scenario (in the order asked), for report.render."""
    head = ("scenario", "server", "req/s", "p99 ms", "errors", "KiB/conn", "worker MiB")
    table: list[tuple[str, ...]] = [(*head, "srv cores", "CPU us/req", "other", "ratio", "vs")]
    for r in sorted(rows, key=lambda r: scenarios.index(r["scenario"])):
        if "error" in r:
            table.append((r["scenario"], r["server"], "FAILED: " + r["error"]))
            continue
        rss = r.get("worker_rss_kib")
        table.append(
            (
                r["scenario"],
                r["server"],
                fmt(r.get("rps"), ",.0f"),
                fmt(r.get("p99_ms"), ".2f"),
                fmt(r.get("errors"), "g"),
                fmt(r.get("kib_per_conn"), ".1f"),
                fmt(rss and rss / 1024, ".1f"),
                fmt(r.get("server_cores"), ".2f"),
                fmt(cpu_us_per_request(r), ".1f"),
                fmt(r.get("other_cores"), ".2f"),
                fmt(r.get("ratio_to_baseline"), ".2f", "x"),
                r["vs"],
            )
        )
    return table


PEERS_LEGEND = """
srv cores: CPU seconds per second of the measured run, all the server's processes (masters
  included); CPU us/req: srv cores / req/s. other: the rest of the machine's busy CPU meanwhile.
KiB/conn: (RSS after - RSS before) / connections, all processes; worker MiB: the idle RSS of
  the largest process without children (the worker; the server itself when it is one process).
ratio: req/s (KiB/conn) over the `vs` server's, same scenario. With --runs N every number is
  the median of the N runs (errors: their sum)."""


def peers_goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    goals = []
    for scen, server, base, target, at_most in PEERS_GOALS:
        metric = "kib_per_conn" if scen == "idle-memory" else "rps"
        val = measured_row(rows, server, scen).get(metric)
        ref = measured_row(rows, base, scen).get(metric)
        value = val / ref if val is not None and ref else None
        goals.append(
            {
                "goal": f"{scen}: {server} {metric} over {base}'s",
                "value": value,
                "target": f"{'<=' if at_most else '>='} {target:.2f}x",
                "met": None if value is None else (value <= target if at_most else value >= target),
            }
        )
    rss = measured_row(rows, "prefork", "idle-memory").get("worker_rss_kib")
    goals.append(
        {
            "goal": "idle-memory: prefork's idle worker RSS, MiB",
            "value": rss and rss / 1024,
            "target": f"<= {WORKER_RSS_MIB:g} MiB",
            "met": None if rss is None else rss / 1024 <= WORKER_RSS_MIB,
        }
    )
    return goals


def lua_version() -> str:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "lua-http"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout.strip() or "missing"


def peers_notes(
    args: argparse.Namespace, rows: list[dict[str, Any]], skipped: dict[str, str]
) -> list[str]:
    notes = [
        f"{os.cpu_count()} CPUs. One core per server: all its processes (prefork's master and "
        f"worker, gunicorn's and granian's main process and worker) pinned together with "
        f"taskset -c {args.server_cpu}; the -w2 rows run two workers on taskset -c "
        f"{args.mp_server_cpus}. The load generator (wrk -t{args.threads}, h2load -t1) on "
        f"taskset -c {args.load_cpu}.",
        f"keep-alive: wrk -c{args.connections}; close: wrk -c{args.close_connections} with "
        f"Connection: close; {args.warmup} s warm-up, {args.duration} s measured. h2c: h2load "
        f"-c{args.h2_connections} -m{args.h2_streams}, {args.h2load_warmup} requests of warm-up, "
        f"{args.h2load_requests} measured. idle-memory: {args.idle} connections. A fresh server "
        f"per row" + (f"; medians of {args.runs} runs." if args.runs > 1 else "."),
        "The same hello everywhere (200 text/plain 'Hello world!\\n', content-length): prefork "
        "tools/peers/prefork_hello.py:onstream (the raw stream API; prefork-asgi: the ASGI app), "
        "the Python peers tools/peers/asgi_hello.py, lua-http tools/hello.lua. No access logs.",
        f"Peers venv {args.peers_venv}: {_dist_versions(args.peers_venv, PEER_DISTS)}; "
        f"lua-http {lua_version()} (Debian) on Lua 5.2 (lua-http-jit: LuaJIT).",
    ]
    if PURE in skipped:
        notes.append(
            f"{PURE} skipped ({skipped[PURE]}): prefork ran its only path, asyncio and h11."
        )
    if lazy := [
        f"{r['server']} / {r['scenario']}"
        for r in rows
        if r.get("rps") and r.get("server_cores") is not None and r["server_cores"] < 0.9
    ]:
        notes.append(
            "The server used less than 0.9 of a core, so it was not the limit (latency, the load "
            "generator, or a worker left idle): " + ", ".join(lazy)
        )
    notes += busy_notes(rows)
    return notes
