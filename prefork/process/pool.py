"""The state the master's parts share: its config, the worker table and the selector.

:class:`Pool` is plain state with the few operations every part needs (add a worker, drop
one, send it a command, retire it). The parts that act on it are separate: ``handoff``
(accepting and handing out), ``supervisor`` (spawn, reap, murder, recycle, manage),
``generations`` (reload and binary upgrade), ``attach`` (workers the master did not fork) and
``master`` (the loop and the signals). Each gets the pool and the callables it needs from the
others when the master builds it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefork.process import wire
from prefork.process.control import WorkerStatus
from prefork.process.dispatch import Dispatcher

log = logging.getLogger("prefork.master")

HEARTBEAT_MAX = 1.0
# What a reload (HUP) may change: MasterConfig fields a config file can set without a restart.
RELOADABLE = (
    "server_options",
    "timeout",
    "graceful_timeout",
    "access_log",
    "max_requests",
    "max_requests_jitter",
    "max_memory",
    "drain_time",
)

ChannelHandler = Callable[[int, socket.socket], None]


@dataclass
class MasterConfig:
    """What the master needs; ``prefork.cli`` builds it from the command line and config file."""

    app: str | Callable[..., Any]
    listeners: list[socket.socket]
    workers: int = 1
    server_options: dict[str, Any] = field(default_factory=dict)
    timeout: float = 30.0
    graceful_timeout: float = 30.0
    access_log: bool = False
    unix_paths: list[str] = field(default_factory=list)
    dispatch: str = "balanced"
    reload: Callable[[], dict[str, Any]] | None = None  # HUP: fresh settings (see cli.py)
    max_requests: int = 0  # recycle a worker after this many requests (0: never)
    max_requests_jitter: int = 0  # plus up to this many, so workers do not recycle together
    max_memory: int = 0  # recycle a worker whose RSS exceeds this many bytes (0: never)
    drain_time: float = 0.0  # seconds a graceful stop drains first (the health path says 503)
    attach_socket: str | None = None  # where processes the master did not fork join the pool
    control_socket: str | None = None  # where `prefork ctl` talks to the master
    pidfile: str | None = None  # renamed to .oldbin during a binary upgrade
    argv: list[str] | None = None  # how to start a new master on USR2 (default: as we were)
    # listeners whose connections start with a PROXY protocol header (some of ``listeners``)
    proxy_listeners: list[socket.socket] = field(default_factory=list)

    @property
    def heartbeat(self) -> float:
        """Seconds between a worker's heartbeats: often enough to notice a silent one."""
        return min(HEARTBEAT_MAX, self.timeout / 4)


@dataclass
class WorkerProcess:
    """The master's view of one worker process."""

    pid: int
    channel: socket.socket
    control: int
    started: float
    last_seen: float
    ready: bool = False
    closing: bool = False
    generation: int = 0
    requests: int = 0
    open_connections: int = 0
    killed_at: float | None = None
    retire_by: float | None = None  # a retiring worker still running then is killed
    request_limit: int = 0
    recycling: bool = False  # serving until its replacement is ready
    attached: bool = False  # joined through the attach socket: not our child, not respawned


class Pool:
    """The worker table and what the master intends for it.

    Attributes:
        config: the one ``MasterConfig``, changed in place by a reload.
        target: how many workers of the current generation to keep.
        workers: the worker records by pid.
        dispatcher: who gets the next connections (generation, load, unacknowledged batches).
        waiting: accepted connections no worker has taken yet.
        selector: what the master's loop waits on.
        children: children that are not workers (the new master of a binary upgrade), with
            what to call with the exit code when one exits.
        paused: not accepting (``pause``, or after WINCH).
        draining: since when (``time.monotonic()``) the workers drain, or None: every worker,
            forked or attached later too, is told ``drain``.
        stopping: the deadline of a stop in progress, or None.
        next_spawn: no worker is forked before this time (boot-failure back-off).
    """

    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.target = config.workers
        self.workers: dict[int, WorkerProcess] = {}
        # connections are the master's copies of their descriptors (handoff.py)
        self.dispatcher: Dispatcher[int] = Dispatcher(policy=config.dispatch)
        self.waiting: list[int] = []
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, Callable[[int], None]] = {}
        self.paused = False
        self.draining: float | None = None
        self.stopping: float | None = None
        self.next_spawn = 0.0

    def live(self) -> list[WorkerProcess]:
        """Workers of the current generation that are not retiring or being replaced."""
        generation = self.dispatcher.generation
        return [
            w
            for w in self.workers.values()
            if not (w.closing or w.recycling or w.attached) and w.generation == generation
        ]

    def max_concurrent(self) -> float:
        """The workers' ``max_concurrent`` in the current settings (a reload may change it)."""
        return float(self.config.server_options.get("max_concurrent", math.inf))

    def add(self, worker: WorkerProcess, on_channel: ChannelHandler) -> None:
        """Put a new worker in the table; ``on_channel(pid, channel)`` reads its messages."""
        self.workers[worker.pid] = worker
        self.dispatcher.add(worker.pid, limit=self.max_concurrent())
        handler = functools.partial(on_channel, worker.pid)
        self.selector.register(worker.channel, selectors.EVENT_READ, handler)
        if self.draining is not None:  # a replacement, or a reload's, drains like the rest
            self.command(worker, "drain")

    def drop(self, pid: int) -> WorkerProcess | None:
        """Forget a worker that is gone; its unacknowledged connections go to another."""
        worker = self.workers.pop(pid, None)
        if worker is None:
            return None
        self.unregister(worker.channel)
        worker.channel.close()
        if not worker.attached:
            os.close(worker.control)
        self.waiting[:0] = self.dispatcher.remove(pid)
        return worker

    def detach(self, pid: int, why: str) -> None:
        """Forget an attached worker (not our child: it is never signalled or reaped)."""
        if self.drop(pid) is not None:
            log.info("attached worker %d left: %s", pid, why)

    def unregister(self, fileobj: Any) -> None:
        """Stop watching ``fileobj`` (if it was watched)."""
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fileobj)

    def command(self, worker: WorkerProcess, command: str) -> None:
        """Send a control command to one worker; a worker that is gone does not mind."""
        with contextlib.suppress(OSError):
            if worker.attached:  # no control pipe: the command goes down the channel
                worker.channel.send(wire.control(command))
            else:
                os.write(worker.control, wire.command(command))

    def broadcast(self, command: str) -> None:
        """Send a control command to every worker."""
        for worker in self.workers.values():
            self.command(worker, command)

    def kill(self, worker: WorkerProcess, signum: int) -> None:
        """Signal a forked worker that must go; it gets nothing new, and the supervisor sends
        SIGKILL if it is still there ``KILL_GRACE`` seconds later, reaps and replaces it."""
        worker.killed_at = time.monotonic()
        self.dispatcher.closing(worker.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signum)

    def retire(self, pid: int) -> None:
        """Ask a worker to finish its connections and exit; it gets nothing new."""
        worker = self.workers[pid]
        if worker.closing:
            return
        worker.closing = True
        worker.killed_at = None
        worker.retire_by = time.monotonic() + self.config.graceful_timeout
        self.dispatcher.closing(pid)
        self.command(worker, "close")

    def status(self) -> list[WorkerStatus]:
        """A snapshot of every worker (``prefork ctl status``)."""
        slots = self.dispatcher.slots
        out = []
        for w in self.workers.values():
            slot = slots.get(w.pid)
            out.append(
                WorkerStatus(
                    pid=w.pid,
                    generation=w.generation,
                    started=w.started,
                    last_seen=w.last_seen,
                    requests=w.requests,
                    open=slot.outstanding if slot else 0,
                    total=slot.total if slot else 0,
                    ready=w.ready,
                    closing=w.closing,
                    recycling=w.recycling,
                    attached=w.attached,
                )
            )
        return out

    def close_waiting(self) -> None:
        """Close the accepted connections no worker took (the clients see a reset)."""
        for fd in self.waiting:
            _close_fd(fd)
        self.waiting.clear()

    def close_in_child(self) -> None:
        """In a new child: close the pool's sockets, pipes and selector (the master's, not its)."""
        for sock in self.config.listeners:
            sock.close()
        for fd in self.waiting:
            _close_fd(fd)
        for slot in self.dispatcher.slots.values():
            for batch in slot.unacked.values():
                for fd in batch:
                    _close_fd(fd)
        for worker in self.workers.values():
            worker.channel.close()
            if not worker.attached:
                os.close(worker.control)
        self.selector.close()


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def describe_exit(code: int) -> str:
    """``exit status 3`` or ``signal SIGKILL``, from ``os.waitstatus_to_exitcode``."""
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"
