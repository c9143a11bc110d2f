"""The results: ratios to the baselines, progress lines, tables, goals and notes, JSON."""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.bench.goals import (
    apps_goals,
    apps_notes,
    cpu_us_per_request,
    master_goals,
    master_notes,
    tls_goals,
    tls_notes,
)
from tools.bench.peers_report import PEERS_LEGEND, peers_goals, peers_notes, peers_table
from tools.bench.servers import (
    BASELINE,
    MASTER_BASELINE,
    ROUND_ROBIN,
    SHARED_ACCEPT,
    TLS_BASELINE,
    ServerDef,
)
from tools.bench.suites import SUITES, TLS_SCENARIOS, Suite


@dataclass
class Results:
    """A run's rows and what was not measured; `tmp`: its temporary directory (certificate,
    logs), written TMP in the printed commands."""

    tmp: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # server: why (no program)
    failed: list[str] = field(default_factory=list)  # servers that failed to start
    not_applicable: list[str] = field(default_factory=list)  # "server / scenario"


def add_ratios(rows: list[dict[str, Any]], suite: Suite = SUITES["single"]) -> None:
    """ratio_to_baseline: the scenario's metric over its baseline server's (the scenario's, else
    the row's server's, else the suite's), named in `vs`; skew rows also get p99_vs_round_robin
    (over prefork-rr-w2's)."""

    def ref(server: str, scen: str, metric: str) -> Any:
        return next(
            (r.get(metric) for r in rows if r["server"] == server and r["scenario"] == scen), None
        )

    for r in rows:
        scenario = suite.scenarios[r["scenario"]]
        metric = scenario.metric
        sdef = suite.servers.get(r["server"])
        r["vs"] = scenario.baseline or (sdef and sdef.baseline) or suite.baseline
        base, val = ref(r["vs"], r["scenario"], metric), r.get(metric)
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


def print_apps_table(rows: list[dict[str, Any]]) -> None:
    head = ("server", "scenario", "req/s", "p99 ms", "errors", "KiB/conn", "srv cores")
    render(
        [(*head, "CPU us/req", "other", "ratio", "vs")]
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
                fmt(r.get("server_cores"), ".2f"),
                fmt(cpu_us_per_request(r), ".1f"),
                fmt(r.get("other_cores"), ".2f"),
                fmt(r.get("ratio_to_baseline"), ".2f", "x"),
                r["vs"],
            )
            for r in rows
        ]
    )
    print(
        """
srv cores: CPU seconds per second of the measured run, the server's processes together (the
  prefork and gunicorn masters included); CPU us/req: srv cores / req/s. other: the rest of
  the machine's busy CPU meanwhile. KiB/conn: (RSS after - RSS before) / connections, children
  included. ratio: req/s (KiB/conn) over the `vs` server's, same scenario."""
    )


def print_goals(goals: list[dict[str, Any]], source: str = "issue 4, item 9") -> None:
    print(f"\nGoals ({source}), this run:")
    for g in goals:
        value = "-" if g["value"] is None else f"{g['value']:.2f}"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[g["met"]]
        if g["met"] is None and g["value"] is not None:
            verdict = "reported"  # a row with no goal
        print(f"  {g['goal']}: {value} (goal {g['target']}): {verdict}")


def print_progress(suite: str, row: dict[str, Any]) -> None:
    """The master, tls, apps and peers suites' line after each measured row."""
    if "error" in row:
        return
    if suite == "tls":
        print(
            f"#   {fmt(row.get('rps'), ',.0f')} req/s, "
            f"{row.get('protocol') or 'http/1.1'}, errors {row.get('errors')}"
            + (
                ", h2load: {failed} failed, {errored} errored, {timeout} timeout".format(
                    **row["h2load"]
                )
                if "h2load" in row
                else ""
            )
        )
        for line in row.get("error_lines", []):
            print(f"#     {line}")
    if suite == "master":
        print(
            f"#   {fmt(row.get('rps'), ',.0f')} req/s, p99 "
            f"{fmt(row.get('p99_ms'), '.2f')} ms, per-worker "
            f"{row.get('split') or '-'}, other {fmt(row.get('other_cores'), '.2f')}"
        )
    if suite in ("apps", "peers"):
        print(
            f"#   {fmt(row.get('rps'), ',.0f')} req/s, {fmt(row.get('kib_per_conn'), '.1f')} "
            f"KiB/conn, errors {row.get('errors')}, srv cores "
            f"{fmt(row.get('server_cores'), '.2f')}, other {fmt(row.get('other_cores'), '.2f')}"
        )


def print_report(
    args: argparse.Namespace, servers: dict[str, ServerDef], results: Results
) -> dict[str, Any]:
    """The suite's table (and goals and notes), the commands, what was not measured. Returns
    the goals and notes for the JSON report (none for the single suite)."""
    rows, extra = results.rows, {}
    print()
    if args.suite == "single":
        print_table(rows)
    else:
        if args.suite == "master":
            print_master_table(rows)
            goals, notes = master_goals(rows), master_notes(args, servers, rows)
            print_goals(goals)
        elif args.suite == "apps":
            print_apps_table(rows)
            goals, notes = apps_goals(rows), apps_notes(args, rows)
            print_goals(goals, "issue 10, item 7")
        elif args.suite == "peers":
            render(peers_table(rows, args.scenarios))
            print(PEERS_LEGEND)
            goals, notes = peers_goals(rows), peers_notes(args, rows, results.skipped)
            print_goals(goals, "issue 13, items 7 and 4")
        else:
            print_tls_table(rows, args.scenarios)
            goals, notes = tls_goals(rows), tls_notes(args, rows)
            print_goals(goals, "issue 3, item 7")
        print("\nNotes:")
        for note in notes:
            print(f"  - {note}")
        extra = {"goals": goals, "notes": notes}
    print_commands(rows, results.tmp, args.suite == "tls")
    if results.not_applicable:
        print(
            "not applicable (the app has no /burn, /pid, counts): "
            + ", ".join(results.not_applicable)
        )
    for name, why in [*results.skipped.items(), *((f, "failed to start") for f in results.failed)]:
        print(f"{name}: {why}")
    return extra


def print_commands(rows: list[dict[str, Any]], tmp: str, tls: bool) -> None:
    """Every server and load command once, with PORT for the row's port and TMP for `tmp`."""
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


def build_report(
    args: argparse.Namespace, results: Results, extra: dict[str, Any]
) -> dict[str, Any]:
    """What --json writes and --chart draws: the machine, the date, the options, the rows,
    what was not measured, `extra` (the goals and notes)."""
    report = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "date": datetime.date.today().isoformat(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "suite": args.suite,
        "baseline": SUITES[args.suite].baseline,
        "skipped": results.skipped,
        "failed_to_start": results.failed,
        "results": results.rows,
    }
    if args.suite == "master":
        report["not_applicable"] = results.not_applicable
    return report | extra
