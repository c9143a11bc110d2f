"""Generations of workers: hot reload (HUP) and the binary upgrade (USR2, WINCH).

A reload starts generation *g+1* with fresh settings; the dispatcher prefers it as soon as one
of its workers is ready, and each new worker that becomes ready retires one of *g*. If *g+1*
cannot load the app it is given up and *g* keeps serving, with the settings it had.

The binary upgrade is nginx's: USR2 starts a new master on the same listening sockets (the
pidfile becomes ``.oldbin``); WINCH retires this master's workers and stops accepting; QUIT
finishes, HUP rolls back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from typing import Any

from prefork.process import systemd
from prefork.process.pool import RELOADABLE, Pool, WorkerProcess, describe_exit

log = logging.getLogger("prefork.master")


class Generations:
    """The reload in progress (if any) and the binary upgrade (if any).

    Attributes:
        reloading: the generation a reload replaces, while it is under way.
        upgrade: the new master of a binary upgrade, while it runs.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.reloading: int | None = None
        self.upgrade: subprocess.Popen[bytes] | None = None
        self._generations = 0
        self._before: tuple[int, dict[str, Any]] | None = None  # target and settings to restore
        self._winched: int | None = None  # the target before WINCH, for a rollback

    # -- hot reload ---------------------------------------------------------------------------

    def reload(self) -> None:
        """Start a new generation with fresh settings and freshly imported code.

        New connections go to the new generation as soon as one of its workers is ready;
        each new worker that becomes ready retires one old worker, which finishes its
        in-flight requests (keep-alive connections end with ``Connection: close``) within
        ``graceful_timeout``. If the new generation cannot load the app, the old one keeps
        serving: a bad deploy never takes the site down.
        """
        pool = self.pool
        if pool.stopping is not None:
            return
        if self._winched is not None:  # roll back a binary upgrade: serve again
            pool.target, self._winched, pool.paused = self._winched, None, False
        if self.reloading is None:
            settings = {name: getattr(pool.config, name) for name in RELOADABLE}
            self._before = (pool.target, settings)
        if pool.config.reload is not None:
            try:
                self._apply(pool.config.reload())
            except Exception as exc:
                log.error("reload: %s; the running workers stay", exc)
                return
        systemd.notify("RELOADING=1")
        if self.reloading is None:
            self.reloading = pool.dispatcher.generation
        self._generations += 1  # never reused, even after a failed reload rolled back
        pool.dispatcher.generation = self._generations
        pool.next_spawn = 0.0
        log.info("reload: starting generation %d", pool.dispatcher.generation)

    def _apply(self, settings: dict[str, Any]) -> None:
        for name in RELOADABLE:
            if name in settings:
                setattr(self.pool.config, name, settings[name])
        if "workers" in settings:
            self.pool.target = settings["workers"]

    def worker_ready(self, ready: WorkerProcess) -> None:
        """A worker is ready: if it is of a new generation, one old worker goes (so capacity
        stays); once the whole new generation is ready, the reload is complete."""
        pool = self.pool
        if ready.generation != pool.dispatcher.generation or self.reloading is None:
            return
        waiting = sorted(
            (
                w
                for w in pool.workers.values()
                if w.generation != ready.generation and not w.closing
            ),
            key=lambda w: w.started,
        )
        if waiting:
            pool.retire(waiting.pop(0).pid)
        live = pool.live()
        if len(live) >= pool.target and all(w.ready for w in live):
            for worker in waiting:
                pool.retire(worker.pid)
            self.reloading = None
            log.info("reload: generation %d serving", pool.dispatcher.generation)

    def reload_failed(self, reason: str) -> bool:
        """The new generation cannot boot: drop it, keep the old one with its settings.

        Returns:
            False if no reload was under way (the failure is not a reload's).
        """
        if self.reloading is None:
            return False
        pool = self.pool
        failed = pool.dispatcher.generation
        log.error(
            "reload: generation %d failed (%s); generation %d keeps serving",
            failed,
            reason,
            self.reloading,
        )
        pool.dispatcher.generation = self.reloading
        self.reloading = None
        if self._before is not None:  # the settings that came with it go too
            pool.target, settings = self._before
            for name, value in settings.items():
                setattr(pool.config, name, value)
        for worker in list(pool.workers.values()):
            if worker.generation == failed:
                pool.retire(worker.pid)
        systemd.notify("READY=1")
        return True

    # -- binary upgrade (nginx style) ---------------------------------------------------------

    def start_upgrade(self) -> None:
        """Start a new master (new prefork code too) on the same listening sockets.

        Both masters accept until this one gets WINCH (its workers retire, it stops
        accepting) and then QUIT; HUP after WINCH rolls back. The pidfile is renamed
        ``.oldbin`` while the new master owns the name.
        """
        pool = self.pool
        if pool.stopping is not None or self.upgrade is not None:
            log.warning("USR2: an upgrade is already under way (or stopping); ignored")
            return
        config = pool.config
        fds = [sock.fileno() for sock in config.listeners]
        env = dict(os.environ, PREFORK_FDS=",".join(map(str, fds)))
        argv = config.argv or [sys.executable, "-m", "prefork", *sys.argv[1:]]
        if config.pidfile and os.path.exists(config.pidfile):
            os.replace(config.pidfile, config.pidfile + ".oldbin")
        try:
            self.upgrade = subprocess.Popen(argv, pass_fds=fds, env=env)
        except OSError as exc:
            log.error("USR2: cannot start a new master: %s", exc)
            self._upgrade_ended()
            return
        pool.children[self.upgrade.pid] = self._upgrade_exited
        log.info("USR2: new master %d started on the same sockets", self.upgrade.pid)

    def _upgrade_exited(self, code: int) -> None:
        assert self.upgrade is not None
        self.upgrade.returncode = code
        log.warning(
            "the new master %d exited (%s); this one stays", self.upgrade.pid, describe_exit(code)
        )
        self._upgrade_ended()
        if self._winched is not None:
            self.reload()  # it had taken over: serve again

    def _upgrade_ended(self) -> None:
        """The new master exited (or never started): this one stays in charge."""
        self.upgrade = None
        pidfile = self.pool.config.pidfile
        if pidfile and os.path.exists(f"{pidfile}.oldbin"):
            os.replace(f"{pidfile}.oldbin", pidfile)

    def winch(self) -> None:
        """After USR2: retire every worker and stop accepting; the master stays for rollback."""
        pool = self.pool
        if self.upgrade is None:
            log.warning("WINCH without a binary upgrade under way; ignored")
            return
        log.info("WINCH: retiring the workers; HUP rolls back, QUIT finishes the upgrade")
        self._winched = pool.target
        pool.target = 0
        pool.paused = True
        for pid in list(pool.workers):
            pool.retire(pid)

    def handed_over(self) -> None:
        """This master is exiting during an upgrade: the new one keeps the pidfile's name."""
        pidfile = self.pool.config.pidfile
        if self.upgrade is not None and pidfile:
            with contextlib.suppress(OSError):
                os.unlink(f"{pidfile}.oldbin")
