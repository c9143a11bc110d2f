"""The ``prefork`` command: run a master with its workers for an app.

``prefork [options] APP`` where APP is ``module:callable`` or ``path/to/file.py:callable``.
Every option can also come from ``--config prefork.toml`` (same names, dashes or underscores);
the command line wins. docs/settings.md lists them all, generated from prefork/settings.py.
Usage errors exit with status 2, run-time failures with 1, each with a one-line message naming
the problem. ``prefork ctl ...`` talks to a running master (prefork/ctl.py).

The parts: the parser (prefork/cliargs.py), the settings from the command line and the config
file (prefork/config.py), the start-up steps (prefork/startup.py); this module runs them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from prefork import ctl, logs
from prefork.app import AppError, AppSpec, load_app
from prefork.cliargs import build_parser, given
from prefork.config import UsageError, load_args, settings
from prefork.process.master import MasterConfig, run
from prefork.startup import drop_privileges, open_all, open_listeners, pidfile, server_options

__all__ = ["build_parser", "main", "master_settings", "open_listeners", "reload_settings"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prefork`` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:
        return ctl.main(argv[1:])
    parser = build_parser()
    args = given(parser.parse_args(argv))
    try:
        args = load_args(args)
        config_path = args.pop("config", None)
        s = settings(args, config_path)
        opts = server_options(s)
    except UsageError as exc:
        parser.exit(2, f"prefork: error: {exc}\n")
    except RuntimeError as exc:
        return failed(exc)
    return start(s, opts, lambda: reload_settings(args, config_path, s))


def failed(exc: BaseException) -> int:
    """Report a run-time failure in one line; exit status 1."""
    print(f"prefork: error: {exc}", file=sys.stderr)
    return 1


def start(s: dict[str, Any], opts: dict[str, Any], reload: Callable[[], dict[str, Any]]) -> int:
    """Set up logging, umask and sockets, drop privileges, write the pidfile, run the master."""
    try:
        logs.configure(s["log_level"], s["error_log"], s["access_log"])
        if s["umask"] is not None:
            os.umask(s["umask"])
        spec = app_spec(s)
        app: Any = load_app(spec) if s["preload"] else spec
        listeners, paths, proxied = open_all(s["bind"], s["backlog"], s["proxy_protocol"])
    except (AppError, RuntimeError, OSError, ValueError) as exc:
        return failed(exc)
    try:
        drop_privileges(s["user"], s["group"])
        with pidfile(s["pidfile"]):
            config = MasterConfig(
                app=app,
                listeners=listeners,
                unix_paths=paths,
                proxy_listeners=proxied,
                dispatch=s["dispatch"],
                attach_socket=s["attach_socket"],
                control_socket=s["control_socket"],
                pidfile=s["pidfile"],
                reload=reload,
                **master_settings(s, opts),
            )
            return run(config)
    except (RuntimeError, OSError) as exc:
        return failed(exc)
    finally:
        for sock in listeners:
            sock.close()


def app_spec(s: dict[str, Any]) -> AppSpec:
    """What every worker loads: APP and the settings that say how to run it."""
    names = [f.name for f in dataclasses.fields(AppSpec) if f.name != "target"]
    return AppSpec(s["app"], **{name: s[name] for name in names})


def master_settings(s: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """The ``MasterConfig`` fields a reload may change: the command's settings ``s`` and the
    workers' server options ``opts``."""
    return {
        "server_options": opts,
        "workers": s["workers"],
        "timeout": s["timeout"],
        "graceful_timeout": s["graceful_timeout"],
        "access_log": s["access_log"] is not None,
        "max_requests": s["max_requests"],
        "max_requests_jitter": s["max_requests_jitter"],
        "max_memory": s["max_memory"] * 1048576,  # MiB on the command line, bytes in the master
        "drain_time": s["drain_time"],
    }


def reload_settings(
    args: dict[str, Any], config_path: str | None, first: dict[str, Any]
) -> dict[str, Any]:
    """HUP: read the config file again; the command line still wins. Binds (and which of them
    expect a PROXY protocol header) need a restart.

    Raises:
        UsageError: the new configuration is invalid (the master keeps its workers).
        RuntimeError: the certificate cannot be loaded (the same).
    """
    fresh = settings(args, config_path)
    if fresh["bind"] != first["bind"] or fresh["proxy_protocol"] != first["proxy_protocol"]:
        logging.getLogger("prefork.master").warning(
            "reload: bind and proxy-protocol changes need a restart"
        )
    return master_settings(fresh, server_options(fresh))
