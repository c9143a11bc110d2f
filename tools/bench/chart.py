"""--chart DIR: the results drawn as SVG bar charts with matplotlib, one per workload (suite and
scenario), a bar per server with its value (and its ratio to the row's baseline) written beside
it, prefork's bars highlighted. Drawn from the report that --json writes, so --from-json FILE
redraws them without running anything.

matplotlib is a bench-only dependency (`pip install -e '.[bench]'`), imported only when a chart
is drawn. The SVG keeps its text as text (`svg.fonttype: none`, so a diff and a search see the
numbers), carries no date and takes its ids from a fixed salt: the same results give the same
bytes. Each bar is a group whose id is `bar-N` (`bar-N-prefork` for prefork's own).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from tools.bench.suites import SUITES

# metric: (what it is, which way is better, scale, format of a value)
METRICS = {
    "rps": ("requests per second", "higher is better", 1.0, ",.0f"),
    "kib_per_conn": ("KiB per idle keep-alive connection", "lower is better", 1.0, ".1f"),
    "p99_ms": ("p99 latency, ms", "lower is better", 1.0, ".1f"),
    "worker_rss_kib": ("idle worker RSS, MiB", "lower is better", 1 / 1024, ".1f"),
}
# further charts of a scenario's rows: metric -> (file name suffix, title)
EXTRA = {"worker_rss_kib": ("worker-rss", "idle worker memory, before any connection")}
HIGHLIGHT, OTHER, MISSING = "#d9480f", "#868e96", "#c92a2a"
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "prefork-bench", "font.size": 10}


def write_charts(report: dict[str, Any], directory: Path) -> list[Path]:
    """One SVG per scenario of the report (and per extra metric it has) in `directory`,
    named SUITE-SCENARIO[-SUFFIX].svg; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    suite, rows = report["suite"], report["results"]
    scenarios = SUITES[suite].scenarios if suite in SUITES else {}
    written = []
    for scen in dict.fromkeys(r["scenario"] for r in rows):
        mine = [r for r in rows if r["scenario"] == scen]
        main = scenarios[scen].metric if scen in scenarios else "rps"
        title = (scenarios[scen].title if scen in scenarios else "") or scen
        for metric in (main, *(m for m in EXTRA if any(r.get(m) for r in mine))):
            if metric not in METRICS:
                continue  # a scenario without a number per server (the master suite's spread)
            suffix, heading = EXTRA.get(metric, ("", title))
            path = directory / f"{suite}-{scen}{'-' if suffix else ''}{suffix}.svg"
            draw(path, heading, subtitle(report, mine, metric), mine, metric)
            written.append(path)
    return written


def subtitle(report: dict[str, Any], rows: list[dict[str, Any]], metric: str) -> str:
    what, better = METRICS[metric][:2]
    runs = report.get("options", {}).get("runs", 1)
    parts = [f"{what}, {better}", f"median of {runs} runs" if runs > 1 else "one run"]
    if metric != "worker_rss_kib" and (vs := {r["vs"] for r in rows if r.get("vs")}):
        parts.append(f"ratios to {', '.join(sorted(vs))}")
    if report.get("date"):
        parts.append(str(report["date"]))
    return "; ".join(parts)


def caption(rows: list[dict[str, Any]]) -> str:
    """The load generator's command (without its taskset and port)."""
    row = next((r for r in rows if r.get("load_command")), {})
    command = row.get("load_command", "")
    if command.startswith("taskset -c "):
        command = command.split(" ", 3)[3]
    return command.replace(f":{row['port']}/", ":PORT/") if row.get("port") else command


def label(row: dict[str, Any], value: float, metric: str) -> str:
    """The text beside a bar: the value, and the ratio to the baseline where there is one."""
    scale, spec = METRICS[metric][2:]
    ratio = row.get("ratio_to_baseline") if metric not in EXTRA else None
    return format(value * scale, spec) + ("" if ratio is None else f"  ({ratio:.2f}x)")


def draw(path: Path, title: str, sub: str, rows: list[dict[str, Any]], metric: str) -> None:
    """Write the chart: a labelled horizontal bar per row, top to bottom in row order."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a screen
    from matplotlib import pyplot

    scale = METRICS[metric][2]
    values = [r.get(metric) if "error" not in r else None for r in rows]
    top = max((v for v in values if v is not None), default=0.0) * scale or 1.0
    with matplotlib.rc_context(STYLE):
        fig, ax = pyplot.subplots(figsize=(7.6, 1.5 + 0.3 * len(rows)), layout="constrained")
        try:
            for i, (row, value) in enumerate(zip(rows, values, strict=True)):
                ours = row["server"].startswith("prefork")
                if value is None:
                    ax.text(top * 0.01, i, "not measured", va="center", color=MISSING)
                    continue
                (bar,) = ax.barh(i, value * scale, color=HIGHLIGHT if ours else OTHER)
                bar.set_gid(f"bar-{i}{'-prefork' if ours else ''}")
                ax.text(
                    value * scale + top * 0.01,
                    i,
                    label(row, value, metric),
                    va="center",
                    fontweight="bold" if ours else "normal",
                )
            ax.set_yticks(range(len(rows)), [r["server"] for r in rows])
            for tick, row in zip(ax.get_yticklabels(), rows, strict=True):
                tick.set_fontweight("bold" if row["server"].startswith("prefork") else "normal")
            ax.invert_yaxis()
            ax.set_xlim(0, top * 1.3)
            ax.spines[["top", "right"]].set_visible(False)
            ax.set_title(f"{title}\n{textwrap.fill(sub, 96)}", loc="left", fontsize=10)
            ax.set_xlabel(caption(rows), fontsize=8, color=OTHER)
            fig.savefig(path, format="svg", metadata={"Date": None, "Creator": None})
        finally:
            pyplot.close(fig)
