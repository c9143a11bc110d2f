"""tools/bench's command line: the documented options, suites and commands parse; the charts it
draws from canned results; the medians of --runs; the servers it skips; tools/hello.lua. No
benchmark runs: only the parser and the chart writer are called, and the two ways of starting
the tool are run with --help."""

from __future__ import annotations

import http.client
import json
import re
import shlex
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tools.bench.chart import write_charts
from tools.bench.cli import build_parser, main, parse_args
from tools.bench.peers_servers import LUA_BIN, LUA_SHARE, PEERS_SERVERS
from tools.bench.process import wait_ready
from tools.bench.runner import unavailable
from tools.bench.runs import merge_runs
from tools.bench.servers import ServerDef

REPO = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"

# Every option, a value for it and what parse_args makes of it: an option that disappears, or
# changes its attribute or type, fails test_every_option_parses.
EVERY_OPTION = {
    "--suite": ("master", "suite", "master"),
    "--servers": ("prefork-w2, uvicorn-w2", "servers", ["prefork-w2", "uvicorn-w2"]),
    "--scenarios": ("close,skew-ka", "scenarios", ["close", "skew-ka"]),
    "--duration": ("3", "duration", 3),
    "--warmup": ("1", "warmup", 1),
    "--connections": ("32", "connections", 32),
    "--threads": ("2", "threads", 2),
    "--idle": ("50", "idle", 50),
    "--runs": ("2", "runs", 2),
    "--close-connections": ("8", "close_connections", 8),
    "--json": ("out.json", "json", Path("out.json")),
    "--chart": ("docs/bench", "chart", Path("docs/bench")),
    "--from-json": ("out.json", "from_json", Path("out.json")),
    "--peers-venv": ("/tmp/peers", "peers_venv", Path("/tmp/peers")),
    "--server-cpu": ("1", "server_cpu", 1),
    "--load-cpu": ("0", "load_cpu", 0),
    "--mp-server-cpus": ("0", "mp_server_cpus", "0"),
    "--skew-connections": ("4", "skew_connections", 4),
    "--spread-rounds": ("2", "spread_rounds", 2),
    "--quiet-wait": ("1.5", "quiet_wait", 1.5),
    "--retry-busy": ("2", "retry_busy", 2),
    "--h2load-requests": ("100", "h2load_requests", 100),
    "--h2load-warmup": ("10", "h2load_warmup", 10),
    "--h2-connections": ("4", "h2_connections", 4),
    "--h2-streams": ("5", "h2_streams", 5),
    "--h2load-idle-timeout": ("3", "h2load_idle_timeout", 3.0),
    "--h2load-timeout": ("30", "h2load_timeout", 30.0),
    "--startup-timeout": ("5", "startup_timeout", 5.0),
}

# Each suite's default servers and scenarios, and its default --duration.
SUITES = {
    "single": (
        ["prefork", "uvicorn-h11", "hypercorn"],
        ["keep-alive", "close", "idle-memory"],
        10,
    ),
    "master": (
        [
            "prefork-w2",
            "prefork-rr-w2",
            "prefork-example-w2",
            "uvicorn-w2",
            "gunicorn-gthread-w2",
            "gunicorn-asgi-w2",
        ],
        ["keep-alive", "close", "skew", "spread"],
        10,
    ),
    "tls": (
        [
            "prefork-h2c",
            "hypercorn-h2c",
            "prefork-tls",
            "uvicorn-h11-tls",
            "hypercorn-tls",
            "prefork-tls-fast",
            "uvicorn-fast-tls",
            "lua-http-tls",
        ],
        ["h2c", "h2-tls", "https-keep-alive", "https-close"],
        8,
    ),
    "apps": (
        [
            "prefork-stream",
            "prefork-asgi",
            "uvicorn-h11",
            "hypercorn",
            "prefork-fastapi",
            "uvicorn-h11-fastapi",
            "prefork-flask",
            "gunicorn-gthread-flask",
        ],
        ["keep-alive", "idle-memory"],
        10,
    ),
    "peers": (
        [
            "prefork",
            "prefork-pure",
            "uvicorn-h11",
            "uvicorn-fast",
            "gunicorn-asgi",
            "granian",
            "lua-http",
            "gunicorn-asgi-h2c",
            "prefork-w2",
            "prefork-pure-w2",
            "uvicorn-h11-w2",
            "uvicorn-fast-w2",
            "gunicorn-asgi-w2",
            "granian-w2",
            "lua-http-w2",
        ],
        ["keep-alive", "close", "h2c", "keep-alive-w2", "idle-memory"],
        10,
    ),
}


def test_every_option_parses() -> None:
    argv = [word for option, (value, _, _) in EVERY_OPTION.items() for word in (option, value)]
    args = parse_args(argv)
    for option, (_, attr, expected) in EVERY_OPTION.items():
        assert getattr(args, attr) == expected, option


def test_parser_has_every_option() -> None:
    known = {s for action in build_parser()._actions for s in action.option_strings}
    assert set(EVERY_OPTION) <= known


def test_defaults() -> None:
    defaults = {
        "suite": "single",
        "warmup": 2,
        "connections": 64,
        "threads": 1,
        "idle": 1000,
        "runs": 1,
        "close_connections": 16,
        "json": None,
        "chart": None,
        "from_json": None,
        "peers_venv": Path("/opt/prefork-peers/venv"),
        "server_cpu": 0,
        "load_cpu": 1,
        "mp_server_cpus": "0,1",
        "skew_connections": 8,
        "spread_rounds": 3,
        "quiet_wait": 0.0,
        "retry_busy": 0,
        "h2load_requests": 50000,
        "h2load_warmup": 5000,
        "h2_connections": 16,
        "h2_streams": 10,
        "h2load_idle_timeout": 10.0,
        "h2load_timeout": 120.0,
        "startup_timeout": 20.0,
    }
    args = parse_args([])
    assert {name: getattr(args, name) for name in defaults} == defaults


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_suite_defaults(suite: str) -> None:
    servers, scenarios, duration = SUITES[suite]
    args = parse_args(["--suite", suite])
    assert (args.servers, args.scenarios, args.duration) == (servers, scenarios, duration)
    # each server and scenario can be named alone
    for name in servers:
        assert parse_args(["--suite", suite, "--servers", name]).servers == [name]
    for name in scenarios:
        assert parse_args(["--suite", suite, "--scenarios", name]).scenarios == [name]


def test_documented_commands_parse() -> None:
    """The commands in docs/benchmarks.md and README.md (python -m tools.bench ...); a shell
    comment after one is not part of it."""
    found = [
        command
        for doc in ("docs/benchmarks.md", "README.md")
        for command in re.findall(r"python -m tools\.bench\b([^`\n]*)", (REPO / doc).read_text())
    ]
    assert len(found) >= 4
    for command in found:
        parse_args(shlex.split(command, comments=True))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--servers", "nope"], "unknown --servers for --suite single: nope"),
        (["--suite", "tls", "--scenarios", "keep-alive"], "unknown --scenarios for --suite tls"),
        (["--suite", "apps", "--scenarios", "close"], "unknown --scenarios for --suite apps"),
        (["--suite", "apps", "--servers", "prefork"], "unknown --servers for --suite apps"),
        (["--suite", "bogus"], "invalid choice: 'bogus'"),
        (["--idle", "0"], "must be >= 1"),
        (["--runs", "0"], "must be >= 1"),
        (["--from-json", "out.json"], "--from-json draws charts: it needs --chart DIR"),
        (["--suite", "peers", "--servers", "hypercorn"], "unknown --servers for --suite peers"),
        (["--suite", "tls", "--h2-streams", "0"], "must be >= 1"),
        (["--no-such-option"], "unrecognized arguments"),
    ],
)
def test_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("how", [["tools/bench"], ["-m", "tools.bench"]])
def test_help_runs(how: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, *how, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--suite {single,master,tls,apps,peers}" in proc.stdout
    assert proc.stdout.startswith(f"usage: python {' '.join(how)} ")


def test_peers_extra_servers_run_only_when_named() -> None:
    assert "prefork-asgi" not in parse_args(["--suite", "peers"]).servers
    args = parse_args(["--suite", "peers", "--servers", "prefork-asgi,lua-http-jit"])
    assert args.servers == ["prefork-asgi", "lua-http-jit"]


# --chart: canned results of the peers suite, as --json writes them --------------------------


def _row(server: str, scenario: str, **values: Any) -> dict[str, Any]:
    return {
        "server": server,
        "scenario": scenario,
        "port": 40000,
        "load_command": "taskset -c 1 wrk -t1 -c64 --latency -d10s http://127.0.0.1:40000/",
        "vs": "uvicorn-fast",
        **values,
    }


CANNED = {
    "suite": "peers",
    "date": "2026-12-04",
    "options": {"runs": 2},
    "results": [
        _row("prefork", "keep-alive", rps=30123.4, ratio_to_baseline=1.25),
        _row("uvicorn-fast", "keep-alive", rps=24098.7, ratio_to_baseline=1.0),
        _row("lua-http", "keep-alive", rps=12000.0, ratio_to_baseline=0.5),
        _row("granian", "keep-alive", error="RuntimeError: wrk exited 1"),
        _row("prefork", "idle-memory", kib_per_conn=2.25, worker_rss_kib=14 * 1024.0),
        _row("uvicorn-fast", "idle-memory", kib_per_conn=7.5, worker_rss_kib=30 * 1024.0),
    ],
}


def _bars(path: Path) -> dict[str, float]:
    """Each bar's group id and its width, read off the SVG's path (``M x y L x y ...``)."""
    root = ET.parse(path).getroot()  # well-formed XML, or ParseError
    assert root.tag == f"{SVG}svg"
    bars = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("id", "").startswith("bar-"):
            (shape,) = group.iter(f"{SVG}path")
            xs = [float(n) for n in re.findall(r"[ML] ([-\d.]+) ", shape.get("d", ""))]
            bars[group.get("id", "")] = max(xs) - min(xs)
            assert ("d9480f" in shape.get("style", "")) == group.get("id", "").endswith("prefork")
    return bars


def test_chart_per_scenario_and_a_bar_per_server(tmp_path: Path) -> None:
    written = write_charts(CANNED, tmp_path)
    assert sorted(p.name for p in written) == [
        "peers-idle-memory-worker-rss.svg",
        "peers-idle-memory.svg",
        "peers-keep-alive.svg",
    ]
    bars = _bars(tmp_path / "peers-keep-alive.svg")
    assert list(bars) == ["bar-0-prefork", "bar-1", "bar-2"]  # granian failed: no bar
    widths = list(bars.values())
    assert widths[0] > widths[1] > widths[2] > 0
    assert abs(widths[0] / widths[2] - 30123.4 / 12000) < 0.01  # to scale
    text = (tmp_path / "peers-keep-alive.svg").read_text()
    assert ">30,123  (1.25x)</text>" in text  # the value and the ratio
    assert ">granian</text>" in text and ">not measured</text>" in text
    assert "median of 2 runs" in text
    assert "wrk -t1 -c64 --latency -d10s http://127.0.0.1:PORT/" in text  # no taskset, no port
    assert len(_bars(tmp_path / "peers-idle-memory.svg")) == 2
    rss = (tmp_path / "peers-idle-memory-worker-rss.svg").read_text()
    assert "idle worker memory" in rss and ">14.0</text>" in rss  # MiB, no ratio


def test_chart_is_deterministic_and_escapes_text(tmp_path: Path) -> None:
    report = {**CANNED, "results": [_row("a<b>&c", "keep-alive", rps=1.0)]}
    first = write_charts(report, tmp_path / "1")[0].read_bytes()
    assert write_charts(report, tmp_path / "2")[0].read_bytes() == first
    assert "a&lt;b&gt;&amp;c" in first.decode()
    assert len(_bars(tmp_path / "1" / "peers-keep-alive.svg")) == 1


def test_from_json_draws_without_running(tmp_path: Path) -> None:
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps(CANNED))
    assert main(["--from-json", str(saved), "--chart", str(tmp_path / "charts")]) == 0
    assert len(_bars(tmp_path / "charts" / "peers-keep-alive.svg")) == 3


# --runs: one row of medians per server and scenario -------------------------------------------


def test_merge_runs_takes_medians() -> None:
    runs = [
        {"server": "p", "scenario": "keep-alive", "port": 1, "rps": 100.0, "errors": 0},
        {"server": "u", "scenario": "keep-alive", "port": 2, "rps": 50.0, "errors": 1},
        {"server": "p", "scenario": "keep-alive", "port": 3, "rps": 200.0, "errors": 2},
        {"server": "u", "scenario": "keep-alive", "port": 4, "error": "wrk exited 1"},
        {"server": "p", "scenario": "keep-alive", "port": 5, "rps": 120.0, "errors": 0},
        {"server": "x", "scenario": "keep-alive", "port": 6, "error": "wrk exited 1"},
    ]
    p, u, x = merge_runs(runs, {"keep-alive": "rps"})
    assert (p["rps"], p["errors"], p["port"], p["runs"], p["failed_runs"]) == (
        120.0,
        2,
        5,  # the last run's, as its commands are
        [100.0, 200.0, 120.0],
        0,
    )
    assert (u["rps"], u["errors"], u["runs"], u["failed_runs"]) == (50.0, 1, [50.0, None], 1)
    assert x == runs[-1]  # failed in every run


# servers that need an option of their program -------------------------------------------------


@pytest.mark.parametrize(("prints", "skipped"), [("--loop  asyncio|uvloop", False), ("", True)])
def test_server_needing_an_option(prints: str, skipped: bool) -> None:
    sdef = ServerDef(
        ("{python}", "x"),
        needs="{python}",
        needs_option=(("{python}", "-c", f"print({prints!r})"), "--loop"),
    )
    why = unavailable(sdef, {"python": sys.executable})
    assert (why is not None) == skipped
    if skipped:
        assert "lists no --loop" in str(why)


def test_prefork_pure_follows_prefork_help() -> None:
    """prefork-pure runs exactly when this prefork's --help has --loop."""
    sdef = PEERS_SERVERS["prefork-pure"]
    values = {"python": sys.executable, "repo": str(REPO)}
    helptext = subprocess.run(
        [sys.executable, "-m", "prefork", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert (unavailable(sdef, values) is None) == ("--loop" in helptext)
    assert unavailable(PEERS_SERVERS["prefork"], values) is None


# tools/hello.lua: lua-http's hello, when Debian's lua-http and Lua 5.2 are installed ----------


@pytest.mark.skipif(
    not (Path(LUA_BIN).exists() and Path(LUA_SHARE).exists()), reason="lua-http not installed"
)
def test_lua_hello_answers_like_the_other_peers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [LUA_BIN, "tools/hello.lua", "127.0.0.1", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(proc, port, timeout=20)
        for method, body in (("GET", b"Hello world!\n"), ("HEAD", b"")):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request(method, "/")
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (200, body)
                assert resp.getheader("content-type") == "text/plain"
                assert resp.getheader("content-length") == "13"
            finally:
                conn.close()
    finally:
        proc.kill()
        _, errors = proc.communicate(timeout=10)
    assert errors == b""  # a client closing after its answer is no error
