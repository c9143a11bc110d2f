"""Scenarios and suites: which workloads run against which servers, and the baselines."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tools.bench.connections import burst_spread, idle_memory
from tools.bench.peers_servers import (
    EXTRA,
    FAST,
    FAST_W2,
    H2C,
    LUA,
    ONE_CORE,
    PEERS_SERVERS,
    TLS_PEERS,
    TWO_WORKERS,
)
from tools.bench.process import Running
from tools.bench.rss import idle_memory_by_process
from tools.bench.servers import (
    APPS_SERVERS,
    BASELINE,
    H2_BASELINE,
    H2C_BASELINE,
    MASTER_BASELINE,
    MASTER_SERVERS,
    SERVERS,
    SHARED_ACCEPT,
    TLS_BASELINE,
    TLS_SERVERS,
    ServerDef,
)
from tools.bench.workloads import h2load_scenario, mp_wrk_scenario, wrk_scenario


@dataclass(frozen=True)
class Scenario:
    run: Callable[[Running, argparse.Namespace], dict[str, Any]]
    metric: str  # result key compared with the baseline in the ratio column ("": no ratio)
    baseline: str | None = None  # the server to compare with, when not the suite's baseline
    counts: bool = False  # needs a `counts` server (others are skipped for this scenario)
    servers: tuple[str, ...] = ()  # the only servers it runs against (empty: all the suite's)
    title: str = ""  # what it measures, for the charts (empty: the scenario's name)


SCENARIOS: dict[str, Scenario] = {
    "keep-alive": Scenario(wrk_scenario(), "rps"),
    "close": Scenario(wrk_scenario("-H", "Connection: close"), "rps"),
    "idle-memory": Scenario(idle_memory, "kib_per_conn"),
}


MASTER_SCENARIOS: dict[str, Scenario] = {
    "keep-alive": Scenario(mp_wrk_scenario(), "rps"),
    "close": Scenario(mp_wrk_scenario("-H", "Connection: close"), "rps"),
    "skew": Scenario(
        mp_wrk_scenario(
            "-H",
            "Connection: close",
            "-s",
            "tools/skew.lua",
            connections="skew_connections",
            skewed=True,
        ),
        "p99_ms",
        baseline=SHARED_ACCEPT,
        counts=True,
    ),
    "skew-ka": Scenario(
        mp_wrk_scenario("-s", "tools/skew.lua", connections="skew_connections", skewed=True),
        "p99_ms",
        baseline=SHARED_ACCEPT,
        counts=True,
    ),
    "spread": Scenario(burst_spread, "", counts=True),  # no ratio: the goal is an even split
}
MASTER_DEFAULT_SCENARIOS = ("keep-alive", "close", "skew", "spread")


TLS_SCENARIOS: dict[str, Scenario] = {
    "h2c": Scenario(
        h2load_scenario("http"), "rps", baseline=H2C_BASELINE, servers=("prefork-h2c", H2C_BASELINE)
    ),
    "h2-tls": Scenario(
        h2load_scenario("https"),
        "rps",
        baseline=H2_BASELINE,
        servers=("prefork-tls", "prefork-tls-fast", H2_BASELINE, "lua-http-tls"),
    ),
    "https-keep-alive": Scenario(
        mp_wrk_scenario(scheme="https"),
        "rps",
        servers=(
            "prefork-tls",
            "prefork-tls-fast",
            TLS_BASELINE,
            "uvicorn-fast-tls",
            H2_BASELINE,
            "lua-http-tls",
        ),
    ),
    # wrk does not resume TLS sessions: each request is a new connection and a full handshake
    "https-close": Scenario(
        mp_wrk_scenario("-H", "Connection: close", scheme="https"),
        "rps",
        servers=("prefork-tls", "prefork-tls-fast", TLS_BASELINE, "uvicorn-fast-tls", H2_BASELINE),
    ),
}
TLS_DURATION = 8  # wrk seconds: the whole suite in about 3 minutes


# One worker; server_cores is the master's and the worker's CPU together.
APPS_SCENARIOS: dict[str, Scenario] = {
    "keep-alive": Scenario(mp_wrk_scenario(), "rps"),
    "idle-memory": Scenario(idle_memory, "kib_per_conn"),
}


# --suite peers (issue 13 item 7): one core per server (prefork: its master and worker), then
# two workers unpinned; the same hello everywhere.
PEERS_SCENARIOS: dict[str, Scenario] = {
    "keep-alive": Scenario(
        mp_wrk_scenario(), "rps", servers=ONE_CORE, title="keep-alive, one core per server"
    ),
    "close": Scenario(
        mp_wrk_scenario("-H", "Connection: close", connections="close_connections"),
        "rps",
        servers=ONE_CORE,
        title="a new connection per request, one core per server",
    ),
    "h2c": Scenario(
        h2load_scenario("http"),
        "rps",
        baseline=LUA,
        servers=H2C,
        title="h2c (HTTP/2 with prior knowledge), one core per server",
    ),
    "keep-alive-w2": Scenario(
        mp_wrk_scenario(),
        "rps",
        baseline=FAST_W2,
        servers=TWO_WORKERS,
        title="keep-alive, two workers, unpinned",
    ),
    "idle-memory": Scenario(
        idle_memory_by_process,
        "kib_per_conn",
        servers=ONE_CORE,
        title="memory per idle keep-alive connection",
    ),
}


@dataclass(frozen=True)
class Suite:
    servers: dict[str, ServerDef]
    scenarios: dict[str, Scenario]
    default_scenarios: tuple[str, ...]
    baseline: str
    default_servers: tuple[str, ...] = ()  # empty: every server


SUITES = {
    "single": Suite(SERVERS, SCENARIOS, tuple(SCENARIOS), BASELINE),
    "master": Suite(MASTER_SERVERS, MASTER_SCENARIOS, MASTER_DEFAULT_SCENARIOS, MASTER_BASELINE),
    "tls": Suite({**TLS_SERVERS, **TLS_PEERS}, TLS_SCENARIOS, tuple(TLS_SCENARIOS), TLS_BASELINE),
    "apps": Suite(APPS_SERVERS, APPS_SCENARIOS, tuple(APPS_SCENARIOS), BASELINE),
    "peers": Suite(
        PEERS_SERVERS,
        PEERS_SCENARIOS,
        tuple(PEERS_SCENARIOS),
        FAST,
        tuple(name for name in PEERS_SERVERS if name not in EXTRA),
    ),
}
