"""The master: owns the listening sockets, accepts, hands connections to workers, supervises.

One thread, one ``selectors`` loop. Each turn reads as gunicorn's arbiter does:
wait (listeners, worker channels, the signal wake-up pipe) -> act on signals -> reap dead
workers -> murder silent ones -> manage the worker count -> hand out waiting connections.
Signal handlers only queue the signal; the loop calls ``handle_<name>``.

This module is the loop, the signals and the wiring; the parts it owns each do one thing, on
the shared :class:`~prefork.process.pool.Pool`:

- ``handoff.Handoff``: accept, dispatch, send batches, read what the workers report;
- ``supervisor.Supervisor``: spawn, reap, murder, recycle, manage;
- ``generations.Generations``: hot reload (HUP) and the binary upgrade (USR2, WINCH);
- ``attach.AttachSocket``: workers the master did not fork;
- ``controlserver.ControlServer``: ``prefork ctl``, through the
  :class:`~prefork.process.control.Controlled` interface that :class:`Master` implements.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

from prefork.process import systemd
from prefork.process.attach import AttachSocket
from prefork.process.control import WorkerStatus
from prefork.process.controlserver import ControlServer
from prefork.process.generations import Generations
from prefork.process.handoff import Handoff
from prefork.process.pool import MasterConfig, Pool, WorkerProcess
from prefork.process.supervisor import HaltServer, Supervisor

__all__ = ["HaltServer", "Master", "MasterConfig", "run"]

log = logging.getLogger("prefork.master")

SUPERVISE = 0.2  # seconds between supervision rounds when no child exited
QUICK_STOP = 5.0  # seconds from SIGQUIT to SIGKILL in a quick stop
SIGNALS = ("HUP", "TERM", "INT", "QUIT", "TTIN", "TTOU", "USR1", "USR2", "WINCH", "CHLD")


class Master:
    """Run with :meth:`run`; returns the exit status."""

    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.pool = Pool(config)
        self.generations = Generations(self.pool)
        self.handoff = Handoff(self.pool, on_ready=self._worker_ready)
        self.supervisor = Supervisor(
            self.pool,
            on_channel=self.handoff.on_channel,
            in_child=self._forget_in_child,
            reload_failed=self.generations.reload_failed,
        )
        self.attach: AttachSocket | None = None
        if config.attach_socket is not None:
            self.attach = AttachSocket(self.pool, config.attach_socket, self.handoff.on_channel)
        self.control: ControlServer | None = None
        self.signals: list[int] = []
        self.exit_status = 0
        self._stop_at: float | None = None  # a graceful stop after --drain-time, if pending
        self._child_exited = False
        self._next_supervise = 0.0
        self._wakeup_r, self._wakeup_w = os.pipe()

    # -- life cycle ------------------------------------------------------------------------------

    def run(self) -> int:
        """Spawn the workers and serve until stopped; returns the exit status."""
        pool = self.pool
        self._setup()
        try:
            while pool.stopping is None or pool.workers:
                self._turn()
                if pool.stopping is not None and time.monotonic() > pool.stopping:
                    self.supervisor.kill_all(signal.SIGKILL)
                    self.supervisor.reap(block=True)
        except HaltServer as halt:
            log.critical("%s", halt)
            self.exit_status = halt.exit_status
            pool.stopping = time.monotonic()  # what dies now is expected, nothing respawns
            self.supervisor.kill_all(signal.SIGKILL)
            self.supervisor.reap(block=True)
        finally:
            self._teardown()
        return self.exit_status

    def _setup(self) -> None:
        selector = self.pool.selector
        for sock in self.config.listeners:
            sock.setblocking(False)
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        selector.register(self._wakeup_r, selectors.EVENT_READ, self._drain_wakeup)
        if self.attach is not None:
            self.attach.open()
        if self.config.control_socket is not None:
            self.control = ControlServer(self.config.control_socket, self, selector)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        for name in SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), self._queue_signal)
        names = _names(self.config.listeners, self.config.proxy_listeners)
        log.info("master %d serving %s", os.getpid(), ", ".join(names))

    def _teardown(self) -> None:
        _default_signals()
        # After a binary upgrade the new master owns the paths: leave them.
        unlink = self.generations.upgrade is None
        self.handoff.close_listeners(unlink)
        if self.attach is not None:
            self.attach.close(unlink)
        if self.control is not None:
            self.control.close(unlink)
        self.generations.handed_over()
        self.pool.close_waiting()
        for worker in list(self.pool.workers.values()):
            if worker.attached:
                self.pool.detach(worker.pid, "the master is stopping")
        self.pool.selector.close()
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
        systemd.notify("STOPPING=1")
        log.info("master %d exiting (%d)", os.getpid(), self.exit_status)

    def _turn(self) -> None:
        for key, _ in self.pool.selector.select(self._wait_time()):
            key.data(key.fileobj)
        if self.control is not None:
            self.control.expire()
        self._handle_signals()
        # Supervision runs on SIGCHLD and every SUPERVISE seconds, not on every wake-up: at
        # thousands of connections a second the master wakes for each few, and the hand-off
        # is what those wake-ups are for.
        now = time.monotonic()
        if self._stop_at is not None and now >= self._stop_at:
            self.stop()  # the drain time is over
        if self._child_exited or now >= self._next_supervise or self.pool.stopping is not None:
            self._child_exited = False
            self._next_supervise = now + SUPERVISE
            self.supervisor.supervise()
        self.handoff.hand_out()
        self.handoff.update_accepting()

    def _wait_time(self) -> float:
        pool = self.pool
        now = time.monotonic()
        wait = min(self.config.heartbeat, max(0.0, self._next_supervise - now))
        if pool.stopping is not None:
            wait = min(wait, max(0.0, pool.stopping - now))
        if self._stop_at is not None:
            wait = min(wait, max(0.0, self._stop_at - now))
        if len(pool.live()) < pool.target and pool.stopping is None:
            wait = min(wait, max(0.0, pool.next_spawn - now))
        deadline = self.control.next_deadline() if self.control is not None else None
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - now))
        return wait

    def _worker_ready(self, worker: WorkerProcess) -> None:
        self.generations.worker_ready(worker)
        self.supervisor.worker_ready(worker)
        live = self.pool.live()
        if all(w.ready for w in live):
            systemd.notify(f"READY=1\nSTATUS={len(live)} workers ready")

    def _forget_in_child(self) -> None:
        """Close, in a new child, everything of the master's that the child must not hold."""
        _default_signals()
        if self.control is not None:
            self.control.close_in_child()
        if self.attach is not None:
            self.attach.close_in_child()
        self.pool.close_in_child()
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)

    # -- signals -----------------------------------------------------------------------------

    def _queue_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)  # the wake-up fd gets a byte; the loop acts

    def _drain_wakeup(self, fd: Any) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wakeup_r, 4096):
                pass

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            name = signal.Signals(signum).name[3:].lower()
            handler = getattr(self, f"handle_{name}", None)
            if handler is not None:
                handler()

    def handle_term(self) -> None:
        """Graceful stop (after --drain-time): listeners closed, in-flight requests finish
        within graceful_timeout. A second TERM during the drain time stops at once."""
        self.stop(graceful=True)

    def handle_int(self) -> None:
        """Quick stop."""
        self.stop(graceful=False)

    handle_quit = handle_int

    def handle_ttin(self) -> None:
        """One worker more."""
        self.pool.target += 1
        log.info("workers: %d (TTIN)", self.pool.target)

    def handle_ttou(self) -> None:
        """One worker fewer (never fewer than one)."""
        if self.pool.target > 1:
            self.pool.target -= 1
            log.info("workers: %d (TTOU)", self.pool.target)

    def handle_usr1(self) -> None:
        """Reopen the log files, here and in every worker."""
        self.reopen_logs()

    def handle_hup(self) -> None:
        """Hot reload: a new generation of workers, then the old one drains."""
        self.reload()

    def handle_usr2(self) -> None:
        """Binary upgrade: a new master on the same sockets (see ``Generations.start_upgrade``)."""
        self.generations.start_upgrade()

    def handle_winch(self) -> None:
        """After USR2: retire every worker and stop accepting; the master stays for rollback."""
        self.generations.winch()

    def handle_chld(self) -> None:
        """A child exited: supervise (reap, respawn) in this turn."""
        self._child_exited = True

    # -- commands (the control.Controlled interface) ---------------------------------------------

    def reload(self) -> None:
        """Start a new generation of workers (see ``Generations.reload``)."""
        if self._stop_at is not None:
            log.warning("reload ignored: a stop is under way (--drain-time)")
            return
        self.generations.reload()

    def broadcast(self, command: str) -> None:
        """Send a control command to every worker."""
        self.pool.broadcast(command)

    def reopen_logs(self) -> None:
        """Reopen the log files, and tell every worker to."""
        from prefork import logs

        logs.reopen()
        self.broadcast("reopen-logs")

    def pause(self) -> None:
        """Stop accepting (clients wait in the backlog) and tell the workers."""
        self.pool.paused = True
        self.broadcast("pause")

    def resume(self) -> None:
        """Accept again, and tell the workers."""
        self.pool.paused = False
        self.broadcast("resume")

    @property
    def draining(self) -> bool:
        """Whether the workers drain (``drain``, or a stop's --drain-time)."""
        return self.pool.draining is not None

    def drain(self) -> None:
        """For load balancers: every worker's health path answers 503 (workers started later
        too) while every request is still served; keep-alive ends after each response."""
        if self.pool.draining is None:
            self.pool.draining = time.monotonic()
            log.info("draining: the health path answers 503")
        self.broadcast("drain")

    def undrain(self) -> bool:
        """Undo :meth:`drain`; False (nothing done) while a stop drains."""
        if self._stop_at is not None or self.pool.stopping is not None:
            return False
        if self.pool.draining is not None:
            self.pool.draining = None
            log.info("draining ended: the health path answers 200")
        self.broadcast("undrain")
        return True

    def set_workers(self, count: int) -> int:
        """Keep ``count`` workers of the current generation; returns the new target."""
        self.pool.target = count
        return self.pool.target

    def stop(self, graceful: bool = True) -> None:
        """Close the listeners; workers finish (graceful) or exit now (quick). A graceful stop
        drains for --drain-time first; another stop meanwhile does not wait."""
        pool = self.pool
        if graceful and self._drain_first():
            return
        self._stop_at = None
        if pool.stopping is not None:
            if not graceful:  # a second, quicker stop shortens the wait
                self.supervisor.kill_all(signal.SIGQUIT)
                pool.stopping = min(pool.stopping, time.monotonic() + QUICK_STOP)
            return
        systemd.notify("STOPPING=1")
        log.info("%s stop", "graceful" if graceful else "quick")
        self.handoff.close_listeners(unlink=self.generations.upgrade is None)
        pool.close_waiting()
        if graceful:
            pool.stopping = time.monotonic() + self.config.graceful_timeout
            for pid in list(pool.workers):
                pool.retire(pid)
        else:
            pool.stopping = time.monotonic() + QUICK_STOP
            self.supervisor.kill_all(signal.SIGQUIT)

    def _drain_first(self) -> bool:
        """Begin a graceful stop's drain time; False: stop now (no drain time, or it is over).

        The drain time counts from when the draining began: after ``prefork ctl drain`` (a
        Kubernetes preStop hook) only what is left of it is waited for.
        """
        pool = self.pool
        if self._stop_at is not None or pool.stopping is not None or not self.config.drain_time:
            return False
        self.drain()
        assert pool.draining is not None
        stop_at = pool.draining + self.config.drain_time
        if stop_at <= time.monotonic():
            return False
        self._stop_at = stop_at
        systemd.notify("STOPPING=1")
        log.info(
            "graceful stop in %.1f s, draining until then (--drain-time); TERM again: now",
            stop_at - time.monotonic(),
        )
        return True

    def worker_status(self) -> list[WorkerStatus]:
        """A snapshot of every worker, for ``prefork ctl status`` and ``metrics``."""
        return self.pool.status()


def _default_signals() -> None:
    signal.set_wakeup_fd(-1)
    for name in SIGNALS:
        signal.signal(getattr(signal, "SIG" + name), signal.SIG_DFL)


def _names(listeners: list[socket.socket], proxied: list[socket.socket]) -> list[str]:
    from prefork.sockets import localname

    out = []
    for sock in listeners:
        name = localname(sock)
        mark = "proxy+" if sock in proxied else ""
        if name[0] == socket.AF_UNIX:
            out.append(f"{mark}unix:{name[1]}")
        elif name[0] == socket.AF_INET6:
            out.append(f"{mark}[{name[1]}]:{name[2]}")
        elif len(name) == 3:
            out.append(f"{mark}{name[1]}:{name[2]}")
    return out


def run(config: MasterConfig) -> int:
    """Run a master until it stops; returns its exit status."""
    try:
        return Master(config).run()
    except KeyboardInterrupt:
        return 0
    finally:
        sys.stdout.flush()
