"""The control socket (``--control-socket PATH``) and its client, ``prefork ctl``.

One command per connection: the client sends one line, the master answers and closes
(``controlserver.ControlServer`` serves the socket; this module is the commands, what they
show and the client). The socket is mode 0600 and the master checks the peer's uid
(``SO_PEERCRED``): only the user the master runs as may use it. Commands::

    status [--json]   a table (or JSON) of the workers: pid, generation, state, age,
                      open/total connections, requests, last heartbeat, RSS, CPU%
    metrics           the same figures in the Prometheus text exposition format
    reload            like HUP          stop [--quick]   like TERM (INT)
    pause | resume    stop / start accepting
    drain | undrain   the workers' health path answers 503 / 200 again (for load balancers)
    workers N         set the number of workers
    reopen-logs       like USR1

The commands act on a :class:`Controlled` (the master implements it) and see the workers as
:class:`WorkerStatus` snapshots; this module never imports the master. The rendering functions
are pure (rows in, text out) so they are tested without a master.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

COLUMNS = ("pid", "gen", "state", "age", "open", "total", "requests", "beat", "rss", "cpu%")


@dataclass(frozen=True)
class WorkerStatus:
    """One worker as the master reports it: a snapshot, so control never changes the master.

    ``started`` and ``last_seen`` are ``time.monotonic()`` values; ``open`` and ``total`` are
    the connections handed to it and not reported closed, and handed to it in all.
    """

    pid: int
    generation: int
    started: float
    last_seen: float
    requests: int
    open: int
    total: int
    ready: bool
    closing: bool = False
    recycling: bool = False
    attached: bool = False

    @property
    def state(self) -> str:
        """``closing``, ``recycling``, ``booting``, ``attached`` or ``ready``."""
        if self.closing:
            return "closing"
        if self.recycling:
            return "recycling"
        if not self.ready:
            return "booting"
        return "attached" if self.attached else "ready"


class Controlled(Protocol):
    """What the commands act on; the master implements it."""

    @property
    def draining(self) -> bool:
        """Whether the workers drain (``status`` and ``metrics`` show it)."""

    def worker_status(self) -> list[WorkerStatus]:
        """A snapshot of every worker."""

    def set_workers(self, count: int) -> int:
        """Keep ``count`` workers; returns the new target."""

    def reload(self) -> None:
        """As HUP."""

    def pause(self) -> None:
        """Stop accepting."""

    def resume(self) -> None:
        """Accept again."""

    def reopen_logs(self) -> None:
        """As USR1."""

    def drain(self) -> None:
        """The health path answers 503; everything is still served."""

    def undrain(self) -> bool:
        """The health path answers 200 again; False: not now (a stop is draining)."""

    def stop(self, graceful: bool = True) -> None:
        """As TERM (graceful) or INT."""


Usage = Mapping[int, tuple[int, float]]  # pid -> (RSS in bytes, CPU%)


def rows(workers: Iterable[WorkerStatus], now: float, usage: Usage) -> list[dict[str, Any]]:
    """One dict per worker, oldest first, with the figures ``status`` and ``metrics`` show.

    Args:
        workers: the master's snapshot.
        now: ``time.monotonic()`` when it was taken.
        usage: RSS and CPU% by pid (a pid missing counts as 0).
    """
    out = []
    for worker in sorted(workers, key=lambda w: w.started):
        rss, cpu = usage.get(worker.pid, (0, 0.0))
        out.append(
            {
                "pid": worker.pid,
                "generation": worker.generation,
                "state": worker.state,
                "age": round(now - worker.started, 1),
                "open": worker.open,
                "total": worker.total,
                "requests": worker.requests,
                "heartbeat_age": round(now - worker.last_seen, 1),
                "rss": rss,
                "cpu_percent": cpu,
            }
        )
    return out


class UsageSampler:
    """RSS and CPU% of the workers, with psutil.

    One ``psutil.Process`` is kept per pid (and the worker's start time, so that a reused pid
    gets a new one): CPU% is measured between two samples of the same handle, so the first
    sample of a worker reads 0. Handles of workers no longer reported are dropped.
    """

    def __init__(self) -> None:
        self._processes: dict[int, tuple[float, Any]] = {}

    def sample(self, workers: Iterable[WorkerStatus]) -> dict[int, tuple[int, float]]:
        """RSS and CPU% by pid for ``workers``; forgets every other pid."""
        import psutil

        kept: dict[int, tuple[float, Any]] = {}
        out: dict[int, tuple[int, float]] = {}
        for worker in sorted(workers, key=lambda w: w.started):
            try:
                started, process = self._processes.get(worker.pid, (None, None))
                if process is None or started != worker.started:
                    process = psutil.Process(worker.pid)
                    process.cpu_percent(None)  # the first call only starts the measurement
                kept[worker.pid] = (worker.started, process)
                out[worker.pid] = (int(process.memory_info().rss), process.cpu_percent(None))
            except psutil.Error:
                out[worker.pid] = (0, 0.0)
        self._processes = kept
        return out


def table(data: list[dict[str, Any]], master_pid: int, draining: bool = False) -> str:
    """The ``status`` table."""
    title = f"master {master_pid}: {len(data)} workers" + (", draining" if draining else "")
    lines = [title, "  ".join(f"{c:>9}" for c in COLUMNS)]
    for r in data:
        cells = (
            r["pid"], r["generation"], r["state"], f"{r['age']:.0f}s", r["open"], r["total"],
            r["requests"], f"{r['heartbeat_age']:.1f}s", f"{r['rss'] // 1048576}M",
            f"{r['cpu_percent']:.0f}",
        )  # fmt: skip
        lines.append("  ".join(f"{c!s:>9}" for c in cells))
    return "\n".join(lines) + "\n"


_METRICS = (
    ("requests", "prefork_worker_requests", "counter", "Requests the worker has started."),
    ("open", "prefork_worker_open_connections", "gauge", "Connections handed and not closed."),
    ("total", "prefork_worker_connections", "counter", "Connections handed to the worker."),
    ("rss", "prefork_worker_resident_memory_bytes", "gauge", "Resident memory of the worker."),
    ("cpu_percent", "prefork_worker_cpu_percent", "gauge", "CPU use since the last sample."),
    ("heartbeat_age", "prefork_worker_heartbeat_age_seconds", "gauge", "Since its last message."),
)


def metrics(data: list[dict[str, Any]], draining: bool = False) -> str:
    """The Prometheus text exposition format (version 0.0.4) of the same figures."""
    out = [
        "# HELP prefork_workers Worker processes.",
        "# TYPE prefork_workers gauge",
        f"prefork_workers {len(data)}",
        "# HELP prefork_draining 1 while the health path answers 503 (drain), else 0.",
        "# TYPE prefork_draining gauge",
        f"prefork_draining {int(draining)}",
    ]
    for key, name, kind, text in _METRICS:
        suffix = "_total" if kind == "counter" else ""
        out.append(f"# HELP {name}{suffix} {text}")
        out.append(f"# TYPE {name}{suffix} {kind}")
        for r in data:
            labels = f'pid="{r["pid"]}",generation="{r["generation"]}",state="{r["state"]}"'
            out.append(f"{name}{suffix}{{{labels}}} {r[key]}")
    return "\n".join(out) + "\n"


def answer(
    target: Controlled,
    words: list[str],
    usage: Callable[[list[WorkerStatus]], Usage],
) -> str:
    """Carry out one command on ``target``; the text to send back.

    Args:
        target: what the command acts on.
        words: the command line, split.
        usage: measures RSS and CPU% of the workers it is given (``UsageSampler.sample``).
    """
    if not words:
        return "error: empty command\n"
    name, args = words[0], words[1:]
    if name in ("status", "metrics"):
        workers = target.worker_status()
        data = rows(workers, time.monotonic(), usage(workers))
        if name == "metrics":
            return metrics(data, target.draining)
        if "--json" in args:
            import json  # the master's workers fork from it: what it imports, each one holds

            return json.dumps(data) + "\n"
        return table(data, os.getpid(), target.draining)
    if name == "workers" and len(args) == 1 and args[0].isdigit() and int(args[0]) >= 1:
        return f"ok: {target.set_workers(int(args[0]))} workers\n"
    if name == "undrain":
        return "ok: undrain\n" if target.undrain() else "error: the master is stopping\n"
    simple: dict[str, Callable[[], None]] = {
        "reload": target.reload,
        "pause": target.pause,
        "resume": target.resume,
        "reopen-logs": target.reopen_logs,
        "drain": target.drain,
        "stop": lambda: target.stop(graceful="--quick" not in args),
    }
    if name in simple:
        simple[name]()
        return f"ok: {name}\n"
    return f"error: unknown command {' '.join(words)!r}\n"


def request(path: str, words: list[str], timeout: float = 5.0) -> str:
    """The client: send ``words`` as one line to the control socket at ``path``; the answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(" ".join(words).encode() + b"\n")
        parts = []
        while chunk := sock.recv(65536):
            parts.append(chunk)
    return b"".join(parts).decode("utf-8", "replace")
