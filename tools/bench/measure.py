"""CPU and memory of the server's processes, of the load generator and of the machine."""

from __future__ import annotations

import contextlib
import resource
import time
from typing import Any

import psutil

BUSY_CORES = 0.2  # other processes using more than this during a row make it suspect


def busy_notes(rows: list[dict[str, Any]]) -> list[str]:
    """The report's warning about rows during which other processes were busy, if any."""
    busy = [
        f"{r['server']} / {r['scenario']}" for r in rows if r.get("other_cores", 0) > BUSY_CORES
    ]
    if not busy:
        return []
    return [
        f"WARNING: other processes used > {BUSY_CORES} cores during "
        + ", ".join(busy)
        + ": rerun those rows on a quiet machine"
    ]


def rss_kib(pid: int) -> float:
    """RSS of the process plus all its descendants, in KiB."""
    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 1024


def tree_memory(pid: int) -> dict[int, dict[str, float]]:
    """RSS, PSS and USS in KiB of the process and each descendant, by pid: the root first.

    RSS counts every page a process maps, the pages a forked worker shares with its master
    included, so the RSS of a master and its workers added up counts shared pages several
    times; PSS divides each page among the processes mapping it (their PSS adds up to what
    they use together), USS is the pages only that process maps (what its exit would free).
    PSS and USS read /proc/PID/smaps (psutil ``memory_full_info``); where that is denied they
    are 0."""
    root = psutil.Process(pid)
    out: dict[int, dict[str, float]] = {}
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            try:
                full = p.memory_full_info()
                pss, uss = full.pss, full.uss
                rss = full.rss
            except psutil.AccessDenied:
                rss, pss, uss = p.memory_info().rss, 0, 0
            out[p.pid] = {"rss": rss / 1024, "pss": pss / 1024, "uss": uss / 1024}
    return out


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process and its descendants (reaped ones included)."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
    return total


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children: wrk (taskset execs it)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent running processes (user, nice, system) since boot;
    not irq/softirq time, which the loopback traffic itself may cause."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system)


def wait_quiet(limit: float, threshold: float = 0.15) -> float:
    """Wait up to `limit` seconds for a 1 s window in which the machine is busy for less than
    `threshold` cores (another job's load would skew the row); return the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        before = busy_cpu_s()
        time.sleep(1.0)
        if busy_cpu_s() - before < threshold:
            break
    return time.monotonic() - start


def share(values: list[int]) -> str:
    """[6, 4] -> "60/40" (percent of the total, largest first)."""
    total = sum(values)
    return "/".join(f"{100 * v / total:.0f}" for v in values) if total else "-"


def per_worker(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], workers: int
) -> list[dict[str, int]]:
    """Requests and burns per process during the run, most requests first; a worker that never
    answered has no count file, so the list is padded with zeros up to `workers`."""
    rows = [
        {
            "pid": pid,
            "requests": req - before.get(pid, (0, 0))[0],
            "burns": burns - before.get(pid, (0, 0))[1],
        }
        for pid, (req, burns) in after.items()
    ]
    rows += [{"pid": 0, "requests": 0, "burns": 0}] * (workers - len(rows))
    return sorted(rows, key=lambda r: (-r["requests"], -r["burns"]))
