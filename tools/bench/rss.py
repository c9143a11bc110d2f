"""Idle memory with the worker's own RSS (--suite peers): idle_memory's totals for the whole
process tree, plus each process's RSS before the connections are opened."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import psutil

from tools.bench.connections import idle_memory
from tools.bench.process import Running


def process_rss(pid: int) -> list[dict[str, Any]]:
    """Every process of the tree rooted at `pid`: pid, name, RSS in KiB, and whether it has
    children (a master, an arbiter) or not (a worker, or a server that is one process)."""
    found = []
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                found.append(
                    {
                        "pid": p.pid,
                        "name": p.name(),
                        "rss_kib": p.memory_info().rss / 1024,
                        "leaf": not p.children(),
                    }
                )
    return found


def idle_memory_by_process(srv: Running, args: argparse.Namespace) -> dict[str, Any]:
    """idle_memory, with `processes` (process_rss of the idle server, after the readiness probe
    and before the connections) and `worker_rss_kib`: the largest RSS of a process without
    children, the worker of a one-worker server (or the server itself when it is one process)."""
    processes = process_rss(srv.proc.pid)
    leaves = [p["rss_kib"] for p in processes if p["leaf"]]
    return {
        **idle_memory(srv, args),
        "processes": processes,
        "worker_rss_kib": max(leaves) if leaves else None,
    }
