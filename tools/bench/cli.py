"""Command line: the options, and main (runs a suite, prints the report)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import tools.bench
from tools.bench.cert import write_cert
from tools.bench.goals import master_goals, master_notes, tls_goals, tls_notes
from tools.bench.measure import BUSY_CORES, wait_quiet
from tools.bench.peers import ensure_peers_venv, has_gunicorn_asgi
from tools.bench.process import StartError, free_port, raise_nofile, running
from tools.bench.report import (
    add_ratios,
    fmt,
    print_goals,
    print_master_table,
    print_table,
    print_tls_table,
)
from tools.bench.servers import HOST, REPO, SHARED_ACCEPT, SHARED_ACCEPT_FALLBACK
from tools.bench.suites import SUITES, TLS_DURATION


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=tools.bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
