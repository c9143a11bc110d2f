"""The master: owns the listening sockets, accepts, hands connections to workers, supervises.

One thread, one ``selectors`` loop. Each turn reads as gunicorn's arbiter does:
wait (listeners, worker channels, the signal wake-up pipe) -> act on signals -> reap dead
workers -> murder silent ones -> manage the worker count -> hand out waiting connections.
Signal handlers only queue the signal; the loop calls ``handle_<name>``.

Hand-off (DESIGN.md section 4): accept until EAGAIN (at most ``ACCEPT_BATCH`` a turn), let the
pure :class:`~prefork.process.dispatch.Dispatcher` share the batch out, one ``sendmsg`` per
worker. The master keeps its copy of each socket until the worker acknowledges the batch, so a
worker that dies first loses nothing: its unacknowledged connections go to another worker.
When no worker can take more, the master stops accepting and the kernel's backlog holds clients.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import logging
import os
import random
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefork.process import fdpass, systemd, wire
from prefork.process.control import ControlServer, WorkerStatus
from prefork.process.dispatch import Dispatcher
from prefork.process.worker import WORKER_BOOT_ERROR, child_main

log = logging.getLogger("prefork.master")

ACCEPT_BATCH = 64
SUPERVISE = 0.2  # seconds between supervision rounds when no child exited
HEARTBEAT_MAX = 1.0
KILL_GRACE = 2.0
QUICK_STOP = 5.0
SIGNALS = ("HUP", "TERM", "INT", "QUIT", "TTIN", "TTOU", "USR1", "USR2", "WINCH", "CHLD")


class HaltServer(Exception):
    """Stop the master with ``exit_status`` after a fatal condition (e.g. the app cannot load)."""

    def __init__(self, reason: str, exit_status: int = 1) -> None:
        super().__init__(reason)
        self.exit_status = exit_status


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
    attach_socket: str | None = None  # where processes the master did not fork join the pool
    control_socket: str | None = None  # where `prefork ctl` talks to the master
    pidfile: str | None = None  # renamed to .oldbin during a binary upgrade
    argv: list[str] | None = None  # how to start a new master on USR2 (default: as we were)


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


class Master:
    """Run with :meth:`run`; returns the exit status."""

    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.target = config.workers
        self.workers: dict[int, WorkerProcess] = {}
        per_worker = config.server_options.get("max_concurrent", float("inf"))
        self.dispatcher: Dispatcher[socket.socket] = Dispatcher(per_worker, config.dispatch)
        self.waiting: list[socket.socket] = []
        self.selector = selectors.DefaultSelector()
        self.signals: list[int] = []
        self.accepting = False
        self.paused = False
        self.stopping: float | None = None  # deadline of a stop in progress
        self.exit_status = 0
        self.reloading: int | None = None  # the generation a reload replaces
        self._generations = 0
        self._ever_ready = False
        self._attach_listener: socket.socket | None = None
        self._upgrade: subprocess.Popen[bytes] | None = None
        self._winched: int | None = None
        self._control: ControlServer | None = None
        self._before_reload: tuple[int, MasterConfig] | None = None
        self._memory_checked = 0.0
        self._child_exited = False
        self._next_supervise = 0.0
        self.boot_failures = 0
        self.next_spawn = 0.0
        self.accept_backoff_until = 0.0
        self._wakeup_r, self._wakeup_w = os.pipe()
        self._heartbeat = min(HEARTBEAT_MAX, config.timeout / 4)

    # -- life cycle ------------------------------------------------------------------------------

    def run(self) -> int:
        """Spawn the workers and serve until stopped; returns the exit status."""
        self._setup()
        try:
            while self.stopping is None or self.workers:
                self._turn()
                if self.stopping is not None and time.monotonic() > self.stopping:
                    self._kill_all(signal.SIGKILL)
                    self._reap(block=True)
        except HaltServer as halt:
            log.critical("%s", halt)
            self.exit_status = halt.exit_status
            self.stopping = time.monotonic()  # what dies now is expected, nothing respawns
            self._kill_all(signal.SIGKILL)
            self._reap(block=True)
        finally:
            self._teardown()
        return self.exit_status

    def _setup(self) -> None:
        for sock in self.config.listeners:
            sock.setblocking(False)
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        self.selector.register(self._wakeup_r, selectors.EVENT_READ, self._drain_wakeup)
        self._open_attach_socket()
        if self.config.control_socket is not None:
            self._control = ControlServer(self.config.control_socket, self)
            serve = self._control.serve_one
            self.selector.register(self._control.sock, selectors.EVENT_READ, lambda _: serve())
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        for name in SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), self._queue_signal)
        log.info("master %d serving %s", os.getpid(), ", ".join(_names(self.config.listeners)))

    def _teardown(self) -> None:
        signal.set_wakeup_fd(-1)
        for name in SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), signal.SIG_DFL)
        self._close_listeners()
        self._close_attach_socket()
        if self._control is not None:
            self._control.close(unlink=self._upgrade is None)
        if self._upgrade is not None and self.config.pidfile:
            with contextlib.suppress(OSError):
                os.unlink(f"{self.config.pidfile}.oldbin")
        for sock in self.waiting:
            sock.close()
        self.waiting.clear()
        for worker in list(self.workers.values()):
            if worker.attached:
                self._detach(worker.pid, "the master is stopping")
        self.selector.close()
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
        systemd.notify("STOPPING=1")
        log.info("master %d exiting (%d)", os.getpid(), self.exit_status)

    def _turn(self) -> None:
        for key, _ in self.selector.select(self._wait_time()):
            key.data(key.fileobj)
        self._handle_signals()
        # Supervision runs on SIGCHLD and every SUPERVISE seconds, not on every wake-up: at
        # thousands of connections a second the master wakes for each few, and the hand-off
        # is what those wake-ups are for.
        now = time.monotonic()
        if self._child_exited or now >= self._next_supervise or self.stopping is not None:
            self._child_exited = False
            self._next_supervise = now + SUPERVISE
            self._reap()
            self._murder()
            self._recycle()
            self._manage()
        self._hand_out()
        self._update_accepting()

    def _wait_time(self) -> float:
        now = time.monotonic()
        wait = min(self._heartbeat, max(0.0, self._next_supervise - now))
        if self.stopping is not None:
            wait = min(wait, max(0.0, self.stopping - now))
        if len(self._live()) < self.target and self.stopping is None:
            wait = min(wait, max(0.0, self.next_spawn - now))
        return wait

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
        """Graceful stop: listeners closed, in-flight requests finish within graceful_timeout."""
        self.stop(graceful=True)

    def handle_int(self) -> None:
        """Quick stop."""
        self.stop(graceful=False)

    handle_quit = handle_int

    def handle_ttin(self) -> None:
        self.target += 1
        log.info("workers: %d (TTIN)", self.target)

    def handle_ttou(self) -> None:
        if self.target > 1:
            self.target -= 1
            log.info("workers: %d (TTOU)", self.target)

    def handle_usr1(self) -> None:
        self.reopen_logs()

    def handle_hup(self) -> None:
        """Hot reload: a new generation of workers, then the old one drains."""
        self.reload()

    # -- binary upgrade (nginx style) --------------------------------------------------------

    def handle_usr2(self) -> None:
        """Start a new master (new prefork code too) on the same listening sockets.

        Both masters accept until this one gets WINCH (its workers retire, it stops
        accepting) and then QUIT; HUP after WINCH rolls back. The pidfile is renamed
        ``.oldbin`` while the new master owns the name.
        """
        if self.stopping is not None or self._upgrade is not None:
            log.warning("USR2: an upgrade is already under way (or stopping); ignored")
            return
        fds = [sock.fileno() for sock in self.config.listeners]
        env = dict(os.environ, PREFORK_FDS=",".join(map(str, fds)))
        argv = self.config.argv or [sys.executable, "-m", "prefork", *sys.argv[1:]]
        if self.config.pidfile and os.path.exists(self.config.pidfile):
            os.replace(self.config.pidfile, self.config.pidfile + ".oldbin")
        try:
            self._upgrade = subprocess.Popen(argv, pass_fds=fds, env=env)
        except OSError as exc:
            log.error("USR2: cannot start a new master: %s", exc)
            self._upgrade_ended()
            return
        log.info("USR2: new master %d started on the same sockets", self._upgrade.pid)

    def _upgrade_ended(self) -> None:
        """The new master exited (or never started): this one stays in charge."""
        self._upgrade = None
        old = f"{self.config.pidfile}.oldbin"
        if self.config.pidfile and os.path.exists(old):
            os.replace(old, self.config.pidfile)

    def handle_winch(self) -> None:
        """After USR2: retire every worker and stop accepting; the master stays for rollback."""
        if self._upgrade is None:
            log.warning("WINCH without a binary upgrade under way; ignored")
            return
        log.info("WINCH: retiring the workers; HUP rolls back, QUIT finishes the upgrade")
        self._winched = self.target
        self.target = 0
        self.paused = True
        for pid in list(self.workers):
            self._retire(pid)

    # -- reload ----------------------------------------------------------------------------------

    def reload(self) -> None:
        """Start a new generation with fresh settings and freshly imported code.

        New connections go to the new generation as soon as one of its workers is ready;
        each new worker that becomes ready retires one old worker, which finishes its
        in-flight requests (keep-alive connections end with ``Connection: close``) within
        ``graceful_timeout``. If the new generation cannot load the app, the old one keeps
        serving: a bad deploy never takes the site down.
        """
        if self.stopping is not None:
            return
        if self._winched is not None:  # roll back a binary upgrade: serve again
            self.target, self._winched, self.paused = self._winched, None, False
        if self.reloading is None:
            self._before_reload = (self.target, dataclasses.replace(self.config))
        if self.config.reload is not None:
            try:
                self._apply(self.config.reload())
            except Exception as exc:
                log.error("reload: %s; the running workers stay", exc)
                return
        systemd.notify("RELOADING=1")
        if self.reloading is None:
            self.reloading = self.dispatcher.generation
        self._generations += 1  # never reused, even after a failed reload rolled back
        self.dispatcher.generation = self._generations
        self.next_spawn = 0.0
        log.info("reload: starting generation %d", self.dispatcher.generation)

    def _apply(self, settings: dict[str, Any]) -> None:
        for name in (
            "server_options",
            "timeout",
            "graceful_timeout",
            "access_log",
            "max_requests",
            "max_requests_jitter",
            "max_memory",
        ):
            if name in settings:
                setattr(self.config, name, settings[name])
        if "workers" in settings:
            self.target = settings["workers"]
        self._heartbeat = min(HEARTBEAT_MAX, self.config.timeout / 4)

    def _replace_old_generation(self, ready: WorkerProcess) -> None:
        if ready.generation != self.dispatcher.generation or self.reloading is None:
            return
        waiting = sorted(
            (
                w
                for w in self.workers.values()
                if w.generation != ready.generation and not w.closing
            ),
            key=lambda w: w.started,
        )
        if waiting:  # one new worker ready: one old worker goes, so capacity stays
            self._retire(waiting.pop(0).pid)
        live = self._live()
        if len(live) >= self.target and all(w.ready for w in live):
            for worker in waiting:
                self._retire(worker.pid)
            self.reloading = None
            log.info("reload: generation %d serving", self.dispatcher.generation)

    def _reload_failed(self, reason: str) -> None:
        """The new generation cannot boot: drop it, keep the old one."""
        assert self.reloading is not None
        failed = self.dispatcher.generation
        log.error(
            "reload: generation %d failed (%s); generation %d keeps serving",
            failed,
            reason,
            self.reloading,
        )
        self.dispatcher.generation = self.reloading
        self.reloading = None
        if self._before_reload is not None:  # the settings that came with it go too
            self.target, self.config = self._before_reload[0], self._before_reload[1]
            self._heartbeat = min(HEARTBEAT_MAX, self.config.timeout / 4)
        for worker in list(self.workers.values()):
            if worker.generation == failed:
                self._retire(worker.pid)
        systemd.notify("READY=1")

    def handle_chld(self) -> None:
        """A child exited: supervise (reap, respawn) in this turn."""
        self._child_exited = True

    # -- commands --------------------------------------------------------------------------------

    def broadcast(self, command: str) -> None:
        """Send a control command to every worker."""
        for worker in self.workers.values():
            self._command(worker, command)

    def _command(self, worker: WorkerProcess, command: str) -> None:
        with contextlib.suppress(OSError):
            if worker.attached:  # no control pipe: the command goes down the channel
                worker.channel.send(wire.control(command))
            else:
                os.write(worker.control, wire.command(command))

    def reopen_logs(self) -> None:
        """Reopen the log files, and tell every worker to."""
        from prefork import logs

        logs.reopen()
        self.broadcast("reopen-logs")

    def set_workers(self, count: int) -> int:
        """Keep ``count`` workers of the current generation; returns the new target."""
        self.target = count
        return self.target

    def worker_status(self) -> list[WorkerStatus]:
        """A snapshot of every worker, for ``prefork ctl status`` and ``metrics``."""
        out = []
        for w in self.workers.values():
            slot = self.dispatcher.slots.get(w.pid)
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

    def pause(self) -> None:
        """Stop accepting (clients wait in the backlog) and tell the workers."""
        self.paused = True
        self.broadcast("pause")

    def resume(self) -> None:
        self.paused = False
        self.broadcast("resume")

    def stop(self, graceful: bool = True) -> None:
        """Close the listeners; workers finish (graceful) or exit now (quick)."""
        if self.stopping is not None:
            if not graceful:  # a second, quicker stop shortens the wait
                self._kill_all(signal.SIGQUIT)
                self.stopping = min(self.stopping, time.monotonic() + QUICK_STOP)
            return
        systemd.notify("STOPPING=1")
        log.info("%s stop", "graceful" if graceful else "quick")
        self._close_listeners()
        for sock in self.waiting:
            sock.close()
        self.waiting.clear()
        if graceful:
            self.stopping = time.monotonic() + self.config.graceful_timeout
            for pid in list(self.workers):
                self._retire(pid)
        else:
            self.stopping = time.monotonic() + QUICK_STOP
            self._kill_all(signal.SIGQUIT)

    def _close_listeners(self) -> None:
        self._set_accepting(False)
        for sock in self.config.listeners:
            sock.close()
        for path in self.config.unix_paths if self._upgrade is None else ():
            with contextlib.suppress(OSError):
                os.unlink(path)  # after a binary upgrade the new master owns the path
        self.config.listeners = []
        self.config.unix_paths = []

    # -- workers -------------------------------------------------------------------------------

    def _live(self) -> list[WorkerProcess]:
        """Workers of the current generation that are not retiring or being replaced."""
        generation = self.dispatcher.generation
        return [
            w
            for w in self.workers.values()
            if not (w.closing or w.recycling or w.attached) and w.generation == generation
        ]

    def _manage(self) -> None:
        if self.stopping is not None:
            return
        live = self._live()
        if len(live) > self.target:
            extra = sorted(live, key=lambda w: (w.open_connections, -w.started))
            for worker in extra[: len(live) - self.target]:
                self._retire(worker.pid)
        elif len(live) < self.target and time.monotonic() >= self.next_spawn:
            for _ in range(self.target - len(live)):
                self.spawn()

    def spawn(self) -> WorkerProcess:
        """Fork one worker."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        control_r, control_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            status = 1
            try:
                parent.close()
                os.close(control_w)
                self._forget_in_child()
                status = child_main(
                    self.config.app,
                    child,
                    control_r,
                    self.config.server_options,
                    self._heartbeat,
                    self.config.access_log,
                )
            except BaseException:
                traceback.print_exc()
            finally:
                logging.shutdown()
                os._exit(status)
        child.close()
        os.close(control_r)
        os.set_blocking(control_w, False)
        parent.setblocking(False)
        now = time.monotonic()
        worker = WorkerProcess(
            pid, parent, control_w, now, now, generation=self.dispatcher.generation
        )
        if self.config.max_requests:
            jitter = random.randint(0, self.config.max_requests_jitter)
            worker.request_limit = self.config.max_requests + jitter
        self.workers[pid] = worker
        self.dispatcher.add(pid)
        self.selector.register(
            parent, selectors.EVENT_READ, functools.partial(self._on_channel, pid)
        )
        log.info("booting worker %d", pid)
        return worker

    def _forget_in_child(self) -> None:
        """Close, in a new child, everything of the master's that the child must not hold."""
        signal.set_wakeup_fd(-1)
        for name in SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), signal.SIG_DFL)
        for sock in self.config.listeners:
            sock.close()
        for sock in self.waiting:
            sock.close()
        for slot in self.dispatcher.slots.values():
            for batch in slot.unacked.values():
                for sock in batch:
                    sock.close()
        for worker in self.workers.values():
            worker.channel.close()
            if not worker.attached:
                os.close(worker.control)
        if self._control is not None:
            self._control.sock.close()
        if getattr(self, "_attach_listener", None) is not None:
            self._attach_listener.close()  # type: ignore[union-attr]
        self.selector.close()
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)

    def _retire(self, pid: int) -> None:
        """Ask a worker to finish its connections and exit; it gets nothing new."""
        worker = self.workers[pid]
        if worker.closing:
            return
        worker.closing = True
        worker.killed_at = None
        worker.retire_by = time.monotonic() + self.config.graceful_timeout
        self.dispatcher.closing(pid)
        self._command(worker, "close")

    def _kill_all(self, signum: int) -> None:
        for worker in list(self.workers.values()):
            if worker.attached:  # not ours to kill: let it go
                self._detach(worker.pid, "the master is stopping")
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)

    def _reap(self, block: bool = False) -> None:
        deadline = time.monotonic() + KILL_GRACE
        while self._upgrade is not None or any(not w.attached for w in self.workers.values()):
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:  # no children left: only attached workers remain
                for pid in [p for p, w in self.workers.items() if not w.attached]:
                    del self.workers[pid]
                return
            if pid == 0:
                return
            self._worker_exited(pid, os.waitstatus_to_exitcode(status))
            if block and time.monotonic() > deadline:
                return

    # -- attached workers ---------------------------------------------------------------------

    def _open_attach_socket(self) -> None:
        path = self.config.attach_socket
        if path is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o177)  # 0600: only this user may join the pool
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        sock.listen(16)
        sock.setblocking(False)
        self._attach_listener = sock
        self.selector.register(sock, selectors.EVENT_READ, self._on_attach)
        log.info("attach socket %s", path)

    def _on_attach(self, listener: socket.socket) -> None:
        try:
            channel, _ = listener.accept()
        except OSError:
            return
        creds = channel.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", creds)
        if uid != os.getuid() or pid in self.workers:
            log.warning("attach refused: pid %d uid %d", pid, uid)
            channel.close()
            return
        channel.setblocking(False)
        now = time.monotonic()
        worker = WorkerProcess(pid, channel, -1, now, now, generation=self.dispatcher.generation)
        worker.attached = True
        self.workers[pid] = worker
        self.dispatcher.add(pid)
        self.selector.register(
            channel, selectors.EVENT_READ, functools.partial(self._on_channel, pid)
        )
        log.info("worker %d attached", pid)

    def _detach(self, pid: int, why: str) -> None:
        """Forget an attached worker; its unacknowledged connections go to another."""
        worker = self.workers.pop(pid, None)
        if worker is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(worker.channel)
        worker.channel.close()
        self.waiting[:0] = self.dispatcher.remove(pid)
        log.info("attached worker %d left: %s", pid, why)

    def _close_attach_socket(self) -> None:
        sock = getattr(self, "_attach_listener", None)
        if sock is None:
            return
        self._attach_listener = None
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()
        if self._upgrade is None:
            with contextlib.suppress(OSError):
                os.unlink(self.config.attach_socket)  # type: ignore[arg-type]

    def _worker_exited(self, pid: int, code: int) -> None:
        if self._upgrade is not None and pid == self._upgrade.pid:
            self._upgrade.returncode = code
            log.warning("the new master %d exited (%s); this one stays", pid, _status(code))
            self._upgrade_ended()
            if self._winched is not None:
                self.reload()  # it had taken over: serve again
            return
        worker = self.workers.pop(pid, None)
        if worker is None:
            return
        if worker.attached:  # a pid reused by a child of ours? never mind it
            self.workers[pid] = worker
            return
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(worker.channel)
        worker.channel.close()
        os.close(worker.control)
        lost = self.dispatcher.remove(pid)
        self.waiting[:0] = lost  # unacknowledged: another worker takes them
        expected = worker.closing or self.stopping is not None
        if code == WORKER_BOOT_ERROR and self.stopping is None:
            if worker.generation != self.dispatcher.generation:
                return  # its generation was already given up
            if self.reloading is not None:
                self._reload_failed(f"worker {pid} could not load the application")
                return
            if not self._ever_ready:  # at start-up: nothing to protect, fail fast
                raise HaltServer(f"worker {pid} could not load the application; stopping")
            # The site is up and the code on disk is broken (a bad deploy, then a respawn):
            # keep the workers that still run, retry with back-off, never take the site down.
            self.boot_failures += 1
            delay = min(0.1 * 2 ** (self.boot_failures - 1), 10.0)
            self.next_spawn = time.monotonic() + delay
            log.error("worker %d could not load the application; retrying in %.1f s", pid, delay)
            return
        if not worker.ready and not expected:
            self.boot_failures += 1
            delay = min(0.1 * 2 ** (self.boot_failures - 1), 10.0)
            self.next_spawn = time.monotonic() + delay
            log.error(
                "worker %d died while booting (%s); next in %.1f s", pid, _status(code), delay
            )
        elif not expected:
            log.warning("worker %d died (%s); replacing it", pid, _status(code))
        else:
            log.info("worker %d exited (%s)", pid, _status(code))

    def _recycle(self) -> None:
        """Mark workers over --max-requests or --max-memory: a replacement starts first, and
        the old worker is retired (gracefully) once the replacement is ready."""
        now = time.monotonic()
        check_memory = self.config.max_memory and now - self._memory_checked >= 1.0
        if check_memory:
            self._memory_checked = now
        for worker in self.workers.values():
            if worker.closing or worker.recycling or not worker.ready or self.stopping is not None:
                continue
            reason = None
            if worker.request_limit and worker.requests >= worker.request_limit:
                reason = f"served {worker.requests} requests"
            elif check_memory:
                rss = _rss(worker.pid)
                if rss > self.config.max_memory:
                    reason = f"RSS {rss // 1048576} MiB over --max-memory"
            if reason is not None:
                log.info("recycling worker %d: %s", worker.pid, reason)
                worker.recycling = True
                self.next_spawn = 0.0

    def _retire_recycled(self, ready: WorkerProcess) -> None:
        for worker in self.workers.values():
            if worker.recycling and not worker.closing:
                self._retire(worker.pid)
                return

    def _murder(self) -> None:
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.killed_at is not None:
                if now - worker.killed_at > KILL_GRACE:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
            elif worker.retire_by is not None and now > worker.retire_by:
                log.warning(
                    "worker %d still busy after the graceful timeout: killing it", worker.pid
                )
                worker.killed_at = now
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            elif worker.attached and now - worker.last_seen > self.config.timeout:
                self._detach(worker.pid, f"silent for {now - worker.last_seen:.0f} s")
            elif now - worker.last_seen > self.config.timeout and not worker.closing:
                log.critical(
                    "worker %d silent for %.0f s: killing it", worker.pid, now - worker.last_seen
                )
                worker.killed_at = now
                self.dispatcher.closing(worker.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGABRT)

    # -- the channel -------------------------------------------------------------------------------

    def _on_channel(self, pid: int, channel: socket.socket) -> None:
        worker = self.workers.get(pid)
        if worker is None:
            return
        while True:
            try:
                data = channel.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the worker is exiting: wait for the reap
                if worker.attached:
                    self._detach(pid, "its channel closed")
                else:
                    self.selector.unregister(channel)
                return
            worker.last_seen = time.monotonic()
            self._on_message(worker, wire.decode(data))

    def _on_message(self, worker: WorkerProcess, message: wire.Message) -> None:
        kind = message.kind
        if kind == wire.ACK:
            for sock in self.dispatcher.acked(worker.pid, message.number):
                sock.close()
        elif kind == wire.CLOSED:
            self.dispatcher.closed(worker.pid, message.number)
        elif kind == wire.BEAT:
            worker.requests = message.requests
            worker.open_connections = message.number
        elif kind == wire.READY:
            worker.ready = True
            self._ever_ready = True
            self.boot_failures = 0
            if not worker.closing:
                self.dispatcher.ready(worker.pid)
            log.info("worker %d ready", worker.pid)
            self._replace_old_generation(worker)
            self._retire_recycled(worker)
            if all(w.ready for w in self._live()):
                systemd.notify(f"READY=1\nSTATUS={len(self._live())} workers ready")
        elif kind == wire.ERROR:
            log.error("worker %d: %s", worker.pid, message.text)

    # -- accepting and handing out ----------------------------------------------------------

    def _update_accepting(self) -> None:
        want = (
            self.stopping is None
            and not self.paused
            and not self.waiting
            and time.monotonic() >= self.accept_backoff_until
            and self.dispatcher.can_accept()
        )
        self._set_accepting(want)

    def _set_accepting(self, want: bool) -> None:
        if want == self.accepting:
            return
        self.accepting = want
        for sock in self.config.listeners:
            if want:
                self.selector.register(sock, selectors.EVENT_READ, self._on_listener)
            else:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(sock)

    def _on_listener(self, listener: socket.socket) -> None:
        accepted = []
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept: %s; backing off 0.5 s", exc)
                    self.accept_backoff_until = time.monotonic() + 0.5
                    self._set_accepting(False)
                break
            accepted.append(sock)
        self.waiting.extend(accepted)
        self._hand_out()

    def _hand_out(self) -> None:
        while self.waiting:
            batches, left = self.dispatcher.assign(self.waiting)
            self.waiting = left
            if not batches:
                return
            for pid, batch_id, socks in batches:
                worker = self.workers[pid]  # type: ignore[index]
                try:
                    fdpass.send(worker.channel, wire.batch(batch_id), [s.fileno() for s in socks])
                except OSError:  # full (EAGAIN) or dying: someone else takes these
                    self.waiting.extend(self.dispatcher.send_failed(pid, batch_id))


def _rss(pid: int) -> int:
    """Resident memory of a worker in bytes (0 if it is gone)."""
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def _status(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"


def _names(listeners: list[socket.socket]) -> list[str]:
    from prefork.sockets import localname

    out = []
    for sock in listeners:
        name = localname(sock)
        if name[0] == socket.AF_UNIX:
            out.append(f"unix:{name[1]}")
        elif name[0] == socket.AF_INET6:
            out.append(f"[{name[1]}]:{name[2]}")
        elif len(name) == 3:
            out.append(f"{name[1]}:{name[2]}")
    return out


def run(config: MasterConfig) -> int:
    """Run a master until it stops; returns its exit status."""
    try:
        return Master(config).run()
    except KeyboardInterrupt:
        return 0
    finally:
        sys.stdout.flush()
