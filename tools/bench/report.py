"""Ratios to the baselines and the printed tables."""

from __future__ import annotations

from typing import Any

from tools.bench.servers import BASELINE, MASTER_BASELINE, ROUND_ROBIN, SHARED_ACCEPT, TLS_BASELINE
from tools.bench.suites import SUITES, TLS_SCENARIOS, Suite


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


def print_goals(goals: list[dict[str, Any]], source: str = "issue 4, item 9") -> None:
    print(f"\nGoals ({source}), this run:")
    for g in goals:
        value = "-" if g["value"] is None else f"{g['value']:.2f}"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[g["met"]]
        if g["met"] is None and g["value"] is not None:
            verdict = "reported"  # a row with no goal
        print(f"  {g['goal']}: {value} (goal {g['target']}): {verdict}")
