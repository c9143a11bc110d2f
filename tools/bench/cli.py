"""Command line: the options and their checks, and main (check the tools, run, report)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tools.bench
from tools.bench.chart import write_charts
from tools.bench.measure import BUSY_CORES
from tools.bench.process import raise_nofile
from tools.bench.report import add_ratios, build_report, print_report
from tools.bench.runner import prepare_servers, run_suite
from tools.bench.suites import SUITES, TLS_DURATION, Suite

# The options that must be >= 1, in the order of the error message.
AT_LEAST_ONE = (
    "--idle",
    "--runs",
    "--duration",
    "--warmup",
    "--connections",
    "--close-connections",
    "--threads",
    "--skew-connections",
    "--spread-rounds",
    "--h2load-requests",
    "--h2load-warmup",
    "--h2-connections",
    "--h2-streams",
)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=tools.bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_load_options(p.add_argument)
    add_master_options(p.add_argument)
    add_tls_options(p.add_argument)
    p.add_argument(
        "--startup-timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="seconds a server gets to answer GET / (20)",
    )
    return p


def add_load_options(add: Callable[..., object]) -> None:
    """The suite, its servers and scenarios, wrk's load, the CPUs, the output, the peers."""
    add(
        "--suite",
        choices=tuple(SUITES),
        default="single",
        help="single: one process per server (default); master: 2 workers per server; tls: "
        "HTTP/2 (h2load) and HTTPS HTTP/1.1, one process per server; apps: ASGI, FastAPI and "
        "Flask apps on prefork --workers 1 against uvicorn, hypercorn and gunicorn; peers: "
        "prefork against uvicorn (h11; httptools+uvloop), gunicorn -k asgi, granian and "
        "lua-http, one core each, then two workers",
    )
    add(
        "--servers",
        help="comma-separated servers (default: the suite's: "
        + "; ".join(f"{k}: {','.join(default_servers(v))}" for k, v in SUITES.items())
        + "; peers also has "
        + ",".join(s for s in SUITES["peers"].servers if s not in SUITES["peers"].default_servers)
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
    add(
        "--runs",
        type=int,
        default=1,
        metavar="N",
        help="run the suite N times over; each row is then the median of its runs (1)",
    )
    add("--connections", type=int, default=64, help="wrk -c connections (64)")
    add(
        "--close-connections",
        type=int,
        default=16,
        metavar="N",
        help="peers suite: wrk -c of the close scenario, a new connection per request (16)",
    )
    add("--threads", type=int, default=1, help="wrk -t threads (1)")
    add("--idle", type=int, default=1000, metavar="N", help="idle-memory connections (1000)")
    add("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    add(
        "--chart",
        type=Path,
        metavar="DIR",
        help="also draw the results as SVG bar charts in DIR, one per scenario "
        "(SUITE-SCENARIO.svg; e.g. docs/bench)",
    )
    add(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="run nothing: draw the --chart charts from an earlier run's --json FILE",
    )
    add(
        "--peers-venv",
        type=Path,
        default=Path("/opt/prefork-peers/venv"),
        metavar="DIR",
        help="venv with the Python peers (uvicorn, hypercorn, gunicorn, granian), created or "
        "completed when they are missing (%(default)s)",
    )
    add("--server-cpu", type=int, default=0, metavar="CPU", help="server's CPU (0)")
    add("--load-cpu", type=int, default=1, metavar="CPU", help="wrk's CPU (1)")


def add_master_options(add: Callable[..., object]) -> None:
    add(
        "--mp-server-cpus",
        default="0,1",
        metavar="LIST",
        help="master suite and the peers suite's -w2 rows: taskset CPU list of the whole server "
        "(%(default)s)",
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


def add_tls_options(add: Callable[..., object]) -> None:
    add(
        "--h2load-requests",
        type=int,
        default=50000,
        metavar="N",
        help="tls and peers suites: h2load -n of the measured run (%(default)s)",
    )
    add(
        "--h2load-warmup",
        type=int,
        default=5000,
        metavar="N",
        help="tls and peers suites: h2load -n of the warm-up run, discarded (%(default)s)",
    )
    add("--h2-connections", type=int, default=16, metavar="N", help="h2load -c (%(default)s)")
    add("--h2-streams", type=int, default=10, metavar="N", help="h2load -m (%(default)s)")
    add(
        "--h2load-idle-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="h2load -N, closes a connection idle this long (%(default)s)",
    )
    add(
        "--h2load-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds an h2load run may take before it is killed (%(default)s)",
    )


def parse_args(argv: list[str] | None, prog: str | None = None) -> argparse.Namespace:
    """The options, with --duration's per-suite default filled in and --servers / --scenarios
    turned into lists (the suite's by default); an unknown name or a count < 1 is an error."""
    p = build_parser(prog)
    args = p.parse_args(argv)
    suite = SUITES[args.suite]
    if args.duration is None:
        args.duration = TLS_DURATION if args.suite == "tls" else 10
    if args.from_json and not args.chart:
        p.error("--from-json draws charts: it needs --chart DIR")
    if args.chart and importlib.util.find_spec("matplotlib") is None:  # before an hour of runs
        p.error("--chart draws with matplotlib, which is not installed: pip install -e '.[bench]'")
    for opt, known, default in (
        ("servers", suite.servers, default_servers(suite)),
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
    if min(getattr(args, opt[2:].replace("-", "_")) for opt in AT_LEAST_ONE) < 1:
        p.error(f"{', '.join(AT_LEAST_ONE[:-1])} and {AT_LEAST_ONE[-1]} must be >= 1")
    return args


def default_servers(suite: Suite) -> tuple[str, ...]:
    return suite.default_servers or tuple(suite.servers)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Exit status: 0, 1 if a server failed to start, 2 if wrk, h2load or taskset is missing."""
    args = parse_args(argv, prog)
    if args.from_json:
        draw(json.loads(args.from_json.read_text()), args.chart)
        return 0
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every `finally` stops its server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Progress lines and a failing server's stderr then come out in order.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    h2load = args.suite == "tls" or "h2c" in args.scenarios
    needed = ("taskset", "wrk", *(("h2load",) if h2load else ()))
    if missing := [t for t in needed if shutil.which(t) is None]:
        print(f"error: missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    raise_nofile(args.idle + 100)  # before any server starts: they inherit it
    servers = prepare_servers(args)
    with tempfile.TemporaryDirectory(prefix="prefork-bench-") as tmp:
        results = run_suite(args, servers, Path(tmp))
    add_ratios(results.rows, SUITES[args.suite])
    report = build_report(args, results, print_report(args, servers, results))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.chart:
        draw(report, args.chart)
    return 1 if results.failed else 0


def draw(report: dict[str, Any], directory: Path) -> None:
    for path in write_charts(report, directory):
        print(f"wrote {path}")
