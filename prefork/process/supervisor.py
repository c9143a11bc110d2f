"""Supervision: spawn, reap, murder (timeouts), recycle and manage the worker count.

Gunicorn's arbiter order, on SIGCHLD and every ``SUPERVISE`` seconds (see ``master``). A
worker that dies before it is ready is a boot failure: the next spawn backs off (0.1 s,
doubling, up to 10 s). A worker that exits with ``WORKER_BOOT_ERROR`` could not import the
app: at start-up the master stops (:class:`HaltServer`); during a reload the new generation is
given up; once the site is up the master keeps the workers it has and retries with back-off.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from typing import NoReturn

from prefork.process.child import WORKER_BOOT_ERROR, child_main
from prefork.process.pool import ChannelHandler, Pool, WorkerProcess, describe_exit

log = logging.getLogger("prefork.master")

KILL_GRACE = 2.0  # seconds from SIGABRT (or SIGKILL) to the next SIGKILL, and for a blocking reap
MEMORY_CHECK = 1.0  # seconds between RSS readings for --max-memory
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 10.0


class HaltServer(Exception):
    """Stop the master with ``exit_status`` after a fatal condition (e.g. the app cannot load)."""

    def __init__(self, reason: str, exit_status: int = 1) -> None:
        super().__init__(reason)
        self.exit_status = exit_status


class Supervisor:
    """Keep ``pool.target`` workers of the current generation alive and responsive.

    Args:
        pool: the shared worker table.
        on_channel: reads a new worker's channel (``Handoff.on_channel``).
        in_child: run in a freshly forked child first, to close what belongs to the master.
        reload_failed: called with a reason when a worker of the current generation cannot load
            the app; returns True if that gave up a reload under way (nothing more to do).
    """

    def __init__(
        self,
        pool: Pool,
        *,
        on_channel: ChannelHandler,
        in_child: Callable[[], None],
        reload_failed: Callable[[str], bool],
    ) -> None:
        self.pool = pool
        self.on_channel = on_channel
        self.in_child = in_child
        self.reload_failed = reload_failed
        self.boot_failures = 0
        self.ever_ready = False
        self._memory_checked = 0.0

    def supervise(self) -> None:
        """One round: reap, murder, recycle, manage."""
        self.reap()
        self.murder()
        self.recycle()
        self.manage()

    # -- spawn and manage ---------------------------------------------------------------------

    def manage(self) -> None:
        """Retire the extra workers, or fork the missing ones (unless backing off)."""
        pool = self.pool
        if pool.stopping is not None:
            return
        live = pool.live()
        if len(live) > pool.target:
            extra = sorted(live, key=lambda w: (w.open_connections, -w.started))
            for worker in extra[: len(live) - pool.target]:
                pool.retire(worker.pid)
        elif len(live) < pool.target and time.monotonic() >= pool.next_spawn:
            for _ in range(pool.target - len(live)):
                self.spawn()

    def spawn(self) -> WorkerProcess:
        """Fork one worker of the current generation."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        control_r, control_w = os.pipe()
        _freeze_shared()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            self._child(child, control_r, parent, control_w)
        child.close()
        os.close(control_r)
        os.set_blocking(control_w, False)
        parent.setblocking(False)
        now = time.monotonic()
        config = self.pool.config
        generation = self.pool.dispatcher.generation
        worker = WorkerProcess(pid, parent, control_w, now, now, generation=generation)
        if config.max_requests:
            import random  # only here: every worker forked later would hold it too

            jitter = random.randint(0, config.max_requests_jitter)
            worker.request_limit = config.max_requests + jitter
        self.pool.add(worker, self.on_channel)
        log.info("booting worker %d", pid)
        return worker

    def _child(
        self, channel: socket.socket, control: int, parent: socket.socket, control_w: int
    ) -> NoReturn:  # pragma: no cover - runs in the child
        status = 1
        try:
            parent.close()
            os.close(control_w)
            self.in_child()
            config = self.pool.config
            status = child_main(
                config.app,
                channel,
                control,
                config.server_options,
                config.heartbeat,
                config.access_log,
            )
        except BaseException:
            traceback.print_exc()
        finally:
            logging.shutdown()
            os._exit(status)

    # -- reap ---------------------------------------------------------------------------------

    def reap(self, block: bool = False) -> None:
        """Collect exited children; ``block``: wait for them, up to ``KILL_GRACE`` seconds."""
        pool = self.pool
        deadline = time.monotonic() + KILL_GRACE
        while pool.children or any(not w.attached for w in pool.workers.values()):
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:  # no children left: only attached workers remain
                for pid in [p for p, w in pool.workers.items() if not w.attached]:
                    del pool.workers[pid]
                return
            if pid == 0:
                return
            self._exited(pid, os.waitstatus_to_exitcode(status))
            if block and time.monotonic() > deadline:
                return

    def _exited(self, pid: int, code: int) -> None:
        on_exit = self.pool.children.pop(pid, None)
        if on_exit is not None:
            on_exit(code)
            return
        worker = self.pool.workers.get(pid)
        if worker is None or worker.attached:  # a pid reused by a child of ours? never mind it
            return
        self.pool.drop(pid)
        expected = worker.closing or self.pool.stopping is not None
        if code == WORKER_BOOT_ERROR and self.pool.stopping is None:
            self._could_not_load(worker)
        elif not worker.ready and not expected:
            delay = self._back_off()
            log.error(
                "worker %d died while booting (%s); next in %.1f s",
                pid,
                describe_exit(code),
                delay,
            )
        elif not expected:
            log.warning("worker %d died (%s); replacing it", pid, describe_exit(code))
        else:
            log.info("worker %d exited (%s)", pid, describe_exit(code))

    def _could_not_load(self, worker: WorkerProcess) -> None:
        pid = worker.pid
        if worker.generation != self.pool.dispatcher.generation:
            return  # its generation was already given up
        if self.reload_failed(f"worker {pid} could not load the application"):
            return
        if not self.ever_ready:  # at start-up: nothing to protect, fail fast
            raise HaltServer(f"worker {pid} could not load the application; stopping")
        # The site is up and the code on disk is broken (a bad deploy, then a respawn):
        # keep the workers that still run, retry with back-off, never take the site down.
        delay = self._back_off()
        log.error("worker %d could not load the application; retrying in %.1f s", pid, delay)

    def _back_off(self) -> float:
        self.boot_failures += 1
        delay = min(BACKOFF_FIRST * 2 ** (self.boot_failures - 1), BACKOFF_MAX)
        self.pool.next_spawn = time.monotonic() + delay
        return delay

    def worker_ready(self, worker: WorkerProcess) -> None:
        """A worker booted: the back-off resets, and one recycling worker may go."""
        self.ever_ready = True
        self.boot_failures = 0
        for other in self.pool.workers.values():
            if other.recycling and not other.closing:
                self.pool.retire(other.pid)
                return

    # -- murder and recycle ---------------------------------------------------------------------

    def murder(self) -> None:
        """Kill workers silent for ``timeout`` and retiring ones past ``graceful_timeout``."""
        now = time.monotonic()
        timeout = self.pool.config.timeout
        for worker in list(self.pool.workers.values()):
            if worker.killed_at is not None:
                if now - worker.killed_at > KILL_GRACE:
                    _kill(worker.pid, signal.SIGKILL)
            elif worker.retire_by is not None and now > worker.retire_by:
                log.warning(
                    "worker %d still busy after the graceful timeout: killing it", worker.pid
                )
                worker.killed_at = now
                _kill(worker.pid, signal.SIGKILL)
            elif worker.attached and now - worker.last_seen > timeout:
                self.pool.detach(worker.pid, f"silent for {now - worker.last_seen:.0f} s")
            elif now - worker.last_seen > timeout and not worker.closing:
                log.critical(
                    "worker %d silent for %.0f s: killing it", worker.pid, now - worker.last_seen
                )
                self.pool.kill(worker, signal.SIGABRT)

    def kill_all(self, signum: int) -> None:
        """Signal every forked worker; attached ones are let go instead."""
        for worker in list(self.pool.workers.values()):
            if worker.attached:  # not ours to kill: let it go
                self.pool.detach(worker.pid, "the master is stopping")
                continue
            _kill(worker.pid, signum)

    def recycle(self) -> None:
        """Mark workers over --max-requests or --max-memory: a replacement starts first, and
        the old worker is retired (gracefully) once the replacement is ready."""
        pool = self.pool
        now = time.monotonic()
        check_memory = pool.config.max_memory and now - self._memory_checked >= MEMORY_CHECK
        if check_memory:
            self._memory_checked = now
        for worker in pool.workers.values():
            if worker.closing or worker.recycling or not worker.ready or pool.stopping is not None:
                continue
            reason = None
            if worker.request_limit and worker.requests >= worker.request_limit:
                reason = f"served {worker.requests} requests"
            elif check_memory:
                rss = _rss(worker.pid)
                if rss > pool.config.max_memory:
                    reason = f"RSS {rss // 1048576} MiB over --max-memory"
            if reason is not None:
                log.info("recycling worker %d: %s", worker.pid, reason)
                worker.recycling = True
                pool.next_spawn = 0.0


def _freeze_shared() -> None:
    """Before a fork: move every object alive now out of the cyclic GC's reach (``gc.freeze``).

    The child inherits them on pages it shares with the master until either side writes to
    one. A collection writes to the header of every object it examines, so the first full
    collection in a worker (or in the master) would copy nearly all the shared pages: about
    5 MiB a worker with nothing preloaded. Frozen, the objects are still freed by reference
    counting, but a reference cycle among them is never collected: the master keeps its state
    in tables without cycles. The collection before the freeze keeps today's cyclic garbage
    out of it; after the first fork it only examines what the master made since the last."""
    gc.collect()
    gc.freeze()


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _rss(pid: int) -> int:
    """Resident memory of a worker in bytes (0 if it is gone)."""
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0
