"""The master, tls and apps suites' goals and notes (reported, never the exit status)."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.bench.measure import busy_notes
from tools.bench.servers import (
    BALANCED,
    BASELINE,
    FASTAPI_BASELINE,
    FLASK_BASELINE,
    H2_BASELINE,
    H2C_BASELINE,
    MASTER_BASELINE,
    ROUND_ROBIN,
    SHARED_ACCEPT,
    TLS_BASELINE,
    ServerDef,
)


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


def tls_notes(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[str]:
    notes = [
        f"{os.cpu_count()} CPUs. Each server is one process pinned with taskset -c "
        f"{args.server_cpu}; the load generator (h2load -t1, wrk -t{args.threads}) with "
        f"taskset -c {args.load_cpu}. Loopback only.",
        "One self-signed P-256 (ECDSA) certificate and key, made at the start in a temporary "
        "directory and deleted at the end, serve every TLS server (prefork on its default TLS "
        "engine, the ssl module, through prefork.tlscontext.load: prefork's settings and ALPN h2, "
        "http/1.1, http/1.0).",
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
    notes += busy_notes(rows)
    return notes


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
        "request; tools/bench reads the files before and after the measured run (no exit hook).",
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
    notes += busy_notes(rows)
    return notes


# --suite apps (issue 10 item 7) -----------------------------------------------------------------

# (goal text, scenario, server, the server it is compared with, target, at most?)
APPS_GOALS = (
    ("ASGI hello req/s", "keep-alive", "prefork-asgi", BASELINE, 1.5, False),
    ("ASGI hello req/s", "keep-alive", "prefork-asgi", "hypercorn", 2.5, False),
    ("FastAPI hello req/s", "keep-alive", "prefork-fastapi", FASTAPI_BASELINE, 1.2, False),
    ("Flask hello req/s", "keep-alive", "prefork-flask", FLASK_BASELINE, 1.5, False),
    ("ASGI KiB per idle connection", "idle-memory", "prefork-asgi", BASELINE, 0.5, True),
)


def cpu_us_per_request(row: dict[str, Any]) -> float | None:
    """The server's CPU microseconds per request in a wrk row (None elsewhere)."""
    cores, rps = row.get("server_cores"), row.get("rps")
    return cores * 1e6 / rps if cores is not None and rps else None


def measured_row(rows: list[dict[str, Any]], server: str, scen: str) -> dict[str, Any]:
    """The server's row in the scenario, {} if it has none or it failed."""
    ok = (r for r in rows if r["server"] == server and r["scenario"] == scen and "error" not in r)
    return next(ok, {})


def apps_goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 10 item 7's goals against this run's rows (reported, never the exit status), then
    the ASGI adapter's cost: prefork-asgi over prefork-stream (req/s, CPU us per request)."""

    def ratio(server: str, base: str, scen: str, key: Callable[[dict[str, Any]], Any]) -> Any:
        val, ref = key(measured_row(rows, server, scen)), key(measured_row(rows, base, scen))
        return val / ref if val is not None and ref else None

    goals = []
    for text, scen, server, base, target, at_most in APPS_GOALS:
        metric = "kib_per_conn" if scen == "idle-memory" else "rps"
        value = ratio(server, base, scen, lambda r, m=metric: r.get(m))
        met = None if value is None else (value <= target if at_most else value >= target)
        goals.append(
            {
                "goal": f"{scen}: {text}, {server} over {base}",
                "value": value,
                "target": f"{'<=' if at_most else '>='} {target:.2f}x",
                "met": met,
            }
        )
    for text, key in (
        ("req/s", lambda r: r.get("rps")),
        ("CPU us per request", cpu_us_per_request),
    ):
        goals.append(
            {
                "goal": f"keep-alive: the ASGI adapter's cost, prefork-asgi {text} over "
                "prefork-stream's (the raw stream API)",
                "value": ratio("prefork-asgi", "prefork-stream", "keep-alive", key),
                "target": "none, reported",
                "met": None,
            }
        )
    return goals


def _dist_versions(venv: Path | None, names: tuple[str, ...]) -> str:
    """The versions ("fastapi 0.1, flask 3.1") in prefork's python (venv None) or in `venv`."""
    found = []
    for name in names:
        if venv is None:
            try:
                found.append(f"{name} {importlib.metadata.version(name)}")
            except importlib.metadata.PackageNotFoundError:
                found.append(f"{name} missing")
            continue
        dists = sorted(venv.glob(f"lib/python*/site-packages/{name}-*.dist-info"))
        found.append(f"{name} {dists[0].name[len(name) + 1 : -10]}" if dists else f"{name} missing")
    return ", ".join(found)


def apps_notes(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[str]:
    frameworks = ("fastapi", "starlette", "pydantic", "flask", "werkzeug")
    notes = [
        f"{os.cpu_count()} CPUs. Each server runs one worker; the prefork and gunicorn masters "
        f"and their worker are pinned together with taskset -c {args.server_cpu} (uvicorn and "
        f"hypercorn are one process), wrk -t{args.threads} with taskset -c {args.load_cpu}. "
        f"keep-alive: wrk -c{args.connections}, {args.warmup} s warm-up, {args.duration} s "
        f"measured; idle-memory: {args.idle} connections. A fresh server per row.",
        "Apps: tools/peers/asgi_hello.py (prefork-asgi, uvicorn-h11, hypercorn), "
        "tools/peers/prefork_hello.py:onstream (prefork-stream: the same response through the raw "
        "stream API, without examples/hello.py's log line per request), tools/peers/"
        "fastapi_hello.py (an async route), tools/peers/flask_hello.py (prefork --interface wsgi "
        "--threads 4, gunicorn -k gthread -w 1 --threads 4).",
        f"Frameworks: prefork's python: {_dist_versions(None, frameworks)}; peers venv "
        f"{args.peers_venv}: {_dist_versions(args.peers_venv, frameworks)}.",
    ]
    if lazy := [
        f"{r['server']} / {r['scenario']}"
        for r in rows
        if r.get("rps") and r.get("server_cores") is not None and r["server_cores"] < 0.9
    ]:
        notes.append(
            "The server used less than 0.9 of its core, so it was not the limit (wrk, latency): "
            + ", ".join(lazy)
        )
    notes += busy_notes(rows)
    return notes
