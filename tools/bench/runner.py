"""Run a suite: for each server and scenario, a fresh server and one measured row."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.bench.cert import write_cert
from tools.bench.measure import BUSY_CORES, wait_quiet
from tools.bench.peers import (
    ensure_app_packages,
    ensure_debian,
    ensure_peers_venv,
    has_gunicorn_asgi,
)
from tools.bench.process import StartError, free_port, running
from tools.bench.report import Results, print_progress
from tools.bench.runs import merge_runs
from tools.bench.servers import HOST, REPO, SHARED_ACCEPT, SHARED_ACCEPT_FALLBACK, ServerDef
from tools.bench.suites import SUITES


def prepare_servers(args: argparse.Namespace) -> dict[str, ServerDef]:
    """The suite's servers; the peers venv made if a chosen server needs it (with FastAPI and
    Flask for the apps suite), the chosen servers' Debian packages installed, and gunicorn's
    asgi worker replaced by uvicorn's when this gunicorn has none."""
    servers = dict(SUITES[args.suite].servers)
    if any(servers[s].peer for s in args.servers):
        ensure_peers_venv(args.peers_venv)
        if args.suite == "apps":
            ensure_app_packages(args.peers_venv)
    if debian := sorted({pkg for s in args.servers for pkg in servers[s].debian}):
        ensure_debian(debian)
    if (
        args.suite == "master"
        and SHARED_ACCEPT in args.servers
        and not has_gunicorn_asgi(args.peers_venv)
    ):
        print(f"# {SHARED_ACCEPT}: this gunicorn has no asgi worker; using UvicornWorker")
        servers[SHARED_ACCEPT] = SHARED_ACCEPT_FALLBACK
    return servers


def run_suite(args: argparse.Namespace, servers: dict[str, ServerDef], tmp: Path) -> Results:
    """Every chosen server x scenario that applies, in order, --runs times over (then one row
    of medians per server and scenario). A server with no program (or without an option it
    needs) is skipped; one that fails to start is not run again (its later rows are dropped)."""
    values = {
        "python": sys.executable,
        "venv": str(args.peers_venv),
        "repo": str(REPO),
        "host": HOST,
    }
    if args.suite == "tls":  # one certificate and key for every server, deleted with `tmp`
        certfile, keyfile = write_cert(tmp)
        values |= {"certfile": str(certfile), "keyfile": str(keyfile)}
    runner = RowRunner(args, values, tmp)
    results = Results(str(tmp))
    scenarios = SUITES[args.suite].scenarios
    for name in args.servers:
        if why := unavailable(servers[name], values):
            results.skipped[name] = why
            print(f"# skipping {name}: {why}")
    chosen = [name for name in args.servers if name not in results.skipped]
    for run in range(1, args.runs + 1):
        if args.runs > 1:
            print(f"# run {run} of {args.runs}")
        runner.run = run
        run_once(args, servers, chosen, runner, results)
    if args.runs > 1:
        results.rows = merge_runs(results.rows, {k: v.metric for k, v in scenarios.items()})
    return results


def unavailable(sdef: ServerDef, values: dict[str, str]) -> str | None:
    """Why the server cannot run here (its `needs` file is missing, or its program lacks the
    option it needs), or None."""
    if not Path(need := sdef.needs.format(**values)).exists():
        return f"{need} does not exist"
    if sdef.needs_option is None:
        return None
    argv, option = sdef.needs_option
    command = [part.format(**values) for part in argv]
    env = dict(os.environ)
    if sdef.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if option not in proc.stdout:
        return f"`{' '.join(argv[-2:])}` lists no {option} (not in this version)"
    return None


def run_once(
    args: argparse.Namespace,
    servers: dict[str, ServerDef],
    chosen: list[str],
    runner: RowRunner,
    results: Results,
) -> None:
    """One run: every server x scenario that applies, rows appended to `results`."""
    scenarios = SUITES[args.suite].scenarios
    for name in chosen:
        if name in results.failed:
            continue
        for scen in args.scenarios:
            if scenarios[scen].servers and name not in scenarios[scen].servers:
                continue  # by design (the tls suite's per-protocol servers)
            if scenarios[scen].counts and not servers[name].counts:
                if f"{name} / {scen}" not in results.not_applicable:
                    results.not_applicable.append(f"{name} / {scen}")
                continue
            if (row := runner.measure(name, servers[name], scen)) is None:
                results.failed.append(name)
                break
            results.rows.append(row)


@dataclass
class RowRunner:
    """Measures rows: `values` fill the servers' argv templates (but the port); the servers'
    logs go to `tmp`."""

    args: argparse.Namespace
    values: dict[str, str]
    tmp: Path
    run: int = 1  # of --runs: names the logs

    def measure(self, name: str, sdef: ServerDef, scen: str) -> dict[str, Any] | None:
        """One row, measured again (up to --retry-busy times) while other processes used more
        than BUSY_CORES; the last attempt is kept. None: the server failed to start."""
        row: dict[str, Any] | None = None
        for attempt in range(1, self.args.retry_busy + 2):
            if (row := self.attempt(name, sdef, scen, attempt)) is None:
                return None
            print_progress(self.args.suite, row)
            if row.get("other_cores", 0.0) <= BUSY_CORES:
                break
            print(f"# other processes used {row['other_cores']:.2f} cores meanwhile")
        return row

    def attempt(self, name: str, sdef: ServerDef, scen: str, attempt: int) -> dict[str, Any] | None:
        """A fresh server on a free port and the scenario against it; a failed measurement is a
        row with an "error", a failed start (printed) None."""
        args = self.args
        waited = wait_quiet(args.quiet_wait) if args.quiet_wait else 0.0
        port = free_port()
        print(f"# {name} / {scen} on port {port}")
        log = self.tmp / f"{name}-{scen}-{self.run}-{attempt}.log"
        cpus = args.mp_server_cpus if args.suite == "master" or sdef.unpinned else None
        try:
            with running(sdef, {**self.values, "port": str(port)}, log, args, cpus) as srv:
                try:
                    result = SUITES[args.suite].scenarios[scen].run(srv, args)
                except Exception as exc:  # a failed measurement, not a failed start
                    result = {"error": f"{type(exc).__name__}: {exc}"}
        except StartError as exc:
            print(f"error: {name} failed to start: {exc}", file=sys.stderr)
            return None
        return {
            "server": name,
            "scenario": scen,
            "port": port,
            "server_command": srv.command,
            **result,
            **({"quiet_wait_s": round(waited, 1)} if args.quiet_wait else {}),
            **({"attempts": attempt} if args.retry_busy else {}),
        }
