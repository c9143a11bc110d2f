"""--chart DIR: the results drawn as SVG bar charts, one per workload (suite and scenario), a bar
per server with its value (and its ratio to the row's baseline) written on it, prefork's bars
highlighted. Drawn from the report that --json writes, so --from-json FILE redraws them without
running anything.

Written by hand rather than with a plotting library: a horizontal bar chart is a few rectangles
and labels, and plain SVG text keeps the committed files small, deterministic (the same results
give the same bytes, so a diff shows what changed) and free of a bench-only dependency that
would have to be installed in prefork's own python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

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
WIDTH, LABEL_W, VALUE_W, TOP, ROW_H, BAR_H = 760, 170, 150, 64, 28, 20
HIGHLIGHT, OTHER = "#d9480f", "#868e96"


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
            path.write_text(draw(heading, subtitle(report, mine, metric), mine, metric))
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


def draw(title: str, sub: str, rows: list[dict[str, Any]], metric: str) -> str:
    """The SVG text: a labelled bar per row (row order), the value and ratio beside it."""
    scale, spec = METRICS[metric][2:]
    values = [r.get(metric) if "error" not in r else None for r in rows]
    top = max((v for v in values if v is not None), default=0.0) or 1.0
    height = TOP + ROW_H * len(rows) + 36
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13" role="img">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="24" font-size="16" font-weight="bold">{escape(title)}</text>',
        f'<text x="10" y="44" fill="#495057">{escape(sub)}</text>',
    ]
    for i, (row, value) in enumerate(zip(rows, values, strict=True)):
        y, ours = TOP + i * ROW_H, row["server"].startswith("prefork")
        bold = ' font-weight="bold"' if ours else ""
        out.append(
            f'<text x="{LABEL_W - 8}" y="{y + 15}" text-anchor="end"{bold}>'
            f"{escape(row['server'])}</text>"
        )
        if value is None:
            out.append(f'<text x="{LABEL_W}" y="{y + 15}" fill="#c92a2a">not measured</text>')
            continue
        width = round((WIDTH - LABEL_W - VALUE_W) * value / top, 1)
        ratio = row.get("ratio_to_baseline") if metric not in EXTRA else None
        out += [
            f'<rect class="bar{" prefork" if ours else ""}" x="{LABEL_W}" y="{y}" '
            f'width="{width}" height="{BAR_H}" fill="{HIGHLIGHT if ours else OTHER}"/>',
            f'<text x="{LABEL_W + width + 6}" y="{y + 15}"{bold}>{format(value * scale, spec)}'
            + ("" if ratio is None else f' <tspan fill="{OTHER}">({ratio:.2f}x)</tspan>')
            + "</text>",
        ]
    out.append(
        f'<text x="10" y="{height - 12}" font-size="11" fill="#868e96">'
        f"{escape(caption(rows))}</text>"
    )
    return "\n".join([*out, "</svg>"]) + "\n"
