"""--runs N: the suite run N times over, and one row per server and scenario made of the runs'
medians (with two runs, their mean), so that one unlucky run does not decide a ratio."""

from __future__ import annotations

import statistics
from typing import Any

# Per-row keys that are not measurements: kept from the last run, with its commands.
NOT_MEASURED = frozenset({"port"})
SUMMED = frozenset({"errors"})  # an error in any run is an error of the row


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def merge_runs(rows: list[dict[str, Any]], metrics: dict[str, str]) -> list[dict[str, Any]]:
    """Rows of several runs (in run order) -> one row per (server, scenario), in the order of
    their first run. Each number present in every run that measured (no "error") is the median
    over those runs, but `errors`, their sum; the rest (commands, port, nested details) is the
    last measured run's. `runs` lists each run's value of the scenario's metric (`metrics`:
    scenario -> metric; None for a run that failed) and `failed_runs` counts those. A row that
    failed in every run stays its last failure."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["server"], row["scenario"]), []).append(row)
    merged = []
    for (_, scenario), runs in groups.items():
        good = [r for r in runs if "error" not in r]
        if not good:
            merged.append(runs[-1])
            continue
        row = dict(good[-1])
        for key in good[-1]:
            values: list[Any] = [r.get(key) for r in good]
            if key not in NOT_MEASURED and all(is_number(v) for v in values):
                row[key] = sum(values) if key in SUMMED else statistics.median(values)
        metric = metrics.get(scenario, "")
        row["runs"] = [None if "error" in r else r.get(metric) for r in runs]
        row["failed_runs"] = len(runs) - len(good)
        merged.append(row)
    return merged
