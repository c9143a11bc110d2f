"""The ``prefork`` command: run a master with its workers for an app.

``prefork [options] APP`` where APP is ``module:callable`` or ``path/to/file.py:callable``.
Every option can also come from ``--config prefork.toml`` (same names, dashes or underscores);
the command line wins. Usage errors exit with status 2, run-time failures with 1, each with a
one-line message naming the problem.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import logging
import os
import pwd
import socket
import sys
import tomllib
from collections.abc import Iterator
from typing import Any

import prefork
import prefork.server
from prefork import logs, sockets
from prefork.app import AppError, check_spec, load
from prefork.options import ListenOptions
from prefork.process import systemd
from prefork.process.master import MasterConfig, run

DEFAULTS: dict[str, Any] = {
    "bind": ["127.0.0.1:8080"],
    "workers": os.cpu_count() or 1,
    "tls": "off",
    "certfile": None,
    "keyfile": None,
    "http_version": None,
    "connection_setup_timeout": 10.0,
    "intra_stream_timeout": 10.0,
    "max_concurrent": None,
    "max_request_line": None,
    "max_header_count": None,
    "max_head_size": None,
    "max_body_size": None,
    "backlog": 2048,
    "timeout": 30.0,
    "graceful_timeout": 30.0,
    "pidfile": None,
    "user": None,
    "group": None,
    "umask": None,
    "log_level": "info",
    "access_log": None,
    "error_log": "-",
    "preload": False,
    "dispatch": "balanced",
    "max_requests": 0,
    "max_requests_jitter": 0,
    "max_memory": 0,
    "attach_socket": None,
    "control_socket": None,
}


class UsageError(Exception):
    """Bad command line or configuration: exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prefork",
        description="Run APP (an async def onstream(server, stream)) in a pre-fork master "
        "with worker processes.",
        argument_default=None,
    )
    p.add_argument("app", nargs="?", metavar="APP", help="module:callable or file.py:callable")
    p.add_argument("--version", action="version", version=f"prefork {prefork.__version__}")
    p.add_argument("-c", "--config", help="TOML file with the same options (CLI wins)")
    p.add_argument(
        "-b",
        "--bind",
        action="append",
        metavar="ADDRESS",
        help="HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N; repeatable (default 127.0.0.1:8080)",
    )
    p.add_argument("-w", "--workers", type=int, help="worker processes (default: CPU count)")
    p.add_argument(
        "--preload",
        action="store_true",
        default=None,
        help="import APP in the master before forking (reload then needs a restart)",
    )
    g = p.add_argument_group("server (every worker's http.server options)")
    g.add_argument(
        "--tls",
        choices=["on", "off", "auto"],
        help="on: TLS only; off: plaintext only (default); auto: sniff each connection",
    )
    g.add_argument("--certfile", help="PEM certificate chain (implies --tls on)")
    g.add_argument("--keyfile", help="PEM private key for --certfile")
    g.add_argument(
        "--http-version",
        choices=["1.0", "1.1", "2"],
        help="the seed's `version`: pin the HTTP version (default: any)",
    )
    g.add_argument(
        "--connection-setup-timeout",
        type=float,
        metavar="S",
        help="seconds for a client's first bytes / TLS handshake (default 10)",
    )
    g.add_argument(
        "--intra-stream-timeout",
        type=float,
        metavar="S",
        help="seconds an idle keep-alive connection is kept (default 10)",
    )
    g.add_argument(
        "--max-concurrent",
        type=int,
        metavar="N",
        help="connections per worker (default: unlimited)",
    )
    g.add_argument("--max-request-line", type=int, metavar="BYTES", help="default 8190 (414)")
    g.add_argument("--max-header-count", type=int, metavar="N", help="default 100 (431)")
    g.add_argument("--max-head-size", type=int, metavar="BYTES", help="default 65536 (431)")
    g.add_argument("--max-body-size", type=int, metavar="BYTES", help="default unlimited (413)")
    g.add_argument("--backlog", type=int, metavar="N", help="listen backlog (default 2048)")
    m = p.add_argument_group("master")
    m.add_argument(
        "--control-socket",
        metavar="PATH",
        help="a Unix socket (mode 0600) for `prefork ctl --control-socket PATH COMMAND`",
    )
    m.add_argument(
        "--attach-socket",
        metavar="PATH",
        help="let processes the master did not fork join as workers (mode 0600)",
    )
    m.add_argument(
        "--max-requests",
        type=int,
        metavar="N",
        help="replace a worker after N requests (default 0: never)",
    )
    m.add_argument(
        "--max-requests-jitter",
        type=int,
        metavar="N",
        help="add up to N to each worker's --max-requests (default 0)",
    )
    m.add_argument(
        "--max-memory",
        type=int,
        metavar="MIB",
        help="replace a worker whose RSS exceeds MIB mebibytes (default 0: never)",
    )
    m.add_argument(
        "--dispatch",
        choices=["balanced", "round-robin"],
        help="how connections are shared: balanced (least outstanding, busy workers last; "
        "default) or round-robin (blind to load, for comparison)",
    )
    m.add_argument(
        "-t",
        "--timeout",
        type=float,
        metavar="S",
        help="kill a worker whose event loop is silent this long (default 30)",
    )
    m.add_argument(
        "--graceful-timeout",
        type=float,
        metavar="S",
        help="time for in-flight requests on stop (default 30)",
    )
    m.add_argument("-p", "--pidfile", help="write the master's pid here")
    m.add_argument("-u", "--user", help="switch to this user after binding")
    m.add_argument("-g", "--group", help="switch to this group after binding")
    m.add_argument("--umask", help="octal umask, e.g. 027")
    m.add_argument("--log-level", choices=["debug", "info", "warning", "error", "critical"])
    m.add_argument("--access-log", metavar="FILE", help="combined-format access log (- stdout)")
    m.add_argument("--error-log", metavar="FILE", help="error log (default -: stderr)")
    return p


def _read_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"--config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config: {path}: {exc}") from None
    out = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in DEFAULTS and name != "app":
            raise UsageError(f"--config: {path}: unknown option {key!r}")
        out[name] = value
    return out


def merge(args: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The command line wins over the config file, which wins over the defaults."""
    merged = dict(DEFAULTS)
    merged["app"] = None
    merged.update(config)
    merged.update({k: v for k, v in args.items() if v is not None})
    if isinstance(merged["bind"], str):
        merged["bind"] = [merged["bind"]]
    if merged["certfile"] and args.get("tls") is None and "tls" not in config:
        merged["tls"] = "on"
    return merged


def parse_bind(text: str) -> ListenOptions | int:
    """``HOST:PORT``, ``[V6]:PORT``, ``unix:PATH`` -> ListenOptions; ``fd://N`` -> N."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise UsageError(f"--bind {text!r}: unix: needs a path")
        return ListenOptions(path=text[5:], unlink=True)
    if text.startswith("fd://"):
        if not text[5:].isdigit():
            raise UsageError(f"--bind {text!r}: fd:// needs a descriptor number")
        return int(text[5:])
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--bind {text!r}: expected HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N")
    return ListenOptions(host=host, port=int(port), reuseaddr=True)


def server_options(s: dict[str, Any]) -> dict[str, Any]:
    """The worker server's options from the settings (validated like ``new()``'s)."""
    opts: dict[str, Any] = {
        "connection_setup_timeout": float(s["connection_setup_timeout"]),
        "intra_stream_timeout": float(s["intra_stream_timeout"]),
        "tls": {"on": True, "off": False, "auto": None}[s["tls"]],
    }
    if s["http_version"] is not None:
        opts["version"] = 2 if str(s["http_version"]) == "2" else float(s["http_version"])
    for name in (
        "max_concurrent",
        "max_request_line",
        "max_header_count",
        "max_head_size",
        "max_body_size",
    ):
        if s[name] is not None:
            opts[name] = s[name]
    if s["certfile"]:
        opts["ctx"] = _tls_context(s["certfile"], s["keyfile"], opts.get("version"))
    elif opts["tls"] is not False:
        # One generated certificate for the whole pool (made before the fork), not one per
        # worker: clients that pin it see the same certificate whichever worker answers.
        from prefork.protocol import tls

        version = opts.get("version")
        opts["ctx"] = tls.default_context(
            None, tls.alpn_protocols(version, h2=version in (None, 2))
        )
        logging.getLogger("prefork").warning(
            "TLS with a generated self-signed certificate: clients will not trust it; "
            "pass --certfile/--keyfile (see docs/tls.md)"
        )
    try:
        prefork.server.new(onstream=_probe, **opts).close()
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return opts


async def _probe(server: Any, stream: Any) -> None:
    """Stands in for the app while the server options are validated."""


def _tls_context(certfile: str, keyfile: str | None, version: Any) -> Any:
    from OpenSSL import SSL

    from prefork.protocol import tls

    for path in filter(None, (certfile, keyfile)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise RuntimeError(f"cannot read {path!r}: {exc.strerror}") from None
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    tls.configure(ctx, tls.alpn_protocols(version, h2=version in (None, 2)))
    try:
        ctx.use_certificate_chain_file(certfile)
        ctx.use_privatekey_file(keyfile or certfile)
        ctx.check_privatekey()
    except (OSError, SSL.Error) as exc:
        raise RuntimeError(f"cannot load certificate {certfile!r}: {exc}") from None
    return ctx


@contextlib.contextmanager
def pidfile(path: str | None) -> Iterator[None]:
    """Write our pid to ``path`` for the master's lifetime; remove it if still ours."""
    if path is None:
        yield
        return
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            with open(path) as f:
                mine = f.read().strip() == str(os.getpid())
            if mine:
                os.unlink(path)


def open_listeners(binds: list[str], backlog: int) -> tuple[list[socket.socket], list[str]]:
    """Bind every address, or take the sockets of an old master (USR2: ``PREFORK_FDS``) or of
    systemd (``LISTEN_FDS``); returns the sockets and the unix paths to remove at exit."""
    passed = os.environ.pop("PREFORK_FDS", "")
    if passed:
        socks = [socket.socket(fileno=int(fd)) for fd in passed.split(",")]
        names = [s.getsockname() for s in socks if s.family == socket.AF_UNIX]
        return socks, [n for n in names if isinstance(n, str) and n]
    inherited = systemd.listen_fds()
    if inherited:
        return inherited, []
    specs = [parse_bind(b) for b in binds]
    listeners: list[socket.socket] = []
    paths: list[str] = []
    try:
        for text, spec in zip(binds, specs, strict=True):
            if isinstance(spec, int):
                sock = socket.socket(fileno=spec)
                if not sockets.is_listening(sock):
                    sock.listen(backlog)
            else:
                try:
                    sock = sockets.bind(spec, backlog)
                except OSError as exc:
                    raise RuntimeError(f"cannot bind {text}: {exc.strerror or exc}") from None
                if spec.path is not None:
                    paths.append(spec.path)
            listeners.append(sock)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners, paths


def drop_privileges(user: str | None, group: str | None) -> None:
    """Switch group then user (after binding: low ports need root only to bind)."""
    try:
        if group is not None:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
            os.setgroups([])
            os.setgid(gid)
        if user is not None:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
            if group is None:
                os.initgroups(entry.pw_name, entry.pw_gid)
                os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
    except (KeyError, OSError) as exc:
        raise RuntimeError(f"cannot switch to user {user!r} / group {group!r}: {exc}") from None


def reload_settings(
    args: dict[str, Any], config_path: str | None, first: dict[str, Any]
) -> dict[str, Any]:
    """HUP: read the config file again; the command line still wins. Binds need a restart.

    Raises:
        UsageError: the new configuration is invalid (the master keeps its workers).
    """
    fresh = merge(args, _read_config(config_path) if config_path else {})
    if fresh["bind"] != first["bind"]:
        logging.getLogger("prefork.master").warning("reload: bind changes need a restart")
    if not isinstance(fresh["workers"], int) or fresh["workers"] < 1:
        raise UsageError(f"workers must be >= 1, got {fresh['workers']!r}")
    return {
        "server_options": server_options(fresh),
        "workers": fresh["workers"],
        "timeout": float(fresh["timeout"]),
        "graceful_timeout": float(fresh["graceful_timeout"]),
        "access_log": fresh["access_log"] is not None,
        "max_requests": fresh["max_requests"],
        "max_requests_jitter": fresh["max_requests_jitter"],
        "max_memory": fresh["max_memory"] * 1048576,
    }


def ctl_main(argv: list[str]) -> int:
    """``prefork ctl``: one command to a running master through its control socket."""
    from prefork.process import control

    parser = argparse.ArgumentParser(
        prog="prefork ctl",
        description="Talk to a running master: status [--json], metrics, reload, "
        "stop [--quick], pause, resume, workers N, reopen-logs.",
    )
    parser.add_argument(
        "-s",
        "--control-socket",
        required=True,
        metavar="PATH",
        help="the master's --control-socket",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    args = parser.parse_args(argv)
    if not args.command:
        parser.exit(2, "prefork ctl: error: a command is required\n")
    try:
        answer = control.request(args.control_socket, args.command)
    except OSError as exc:
        print(f"prefork ctl: error: {args.control_socket}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    sys.stdout.write(answer)
    return 1 if answer.startswith("error") else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prefork`` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:
        return ctl_main(argv[1:])
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    try:
        config_path = args.pop("config")
        s = merge(args, _read_config(config_path) if config_path else {})
        if not s["app"]:
            raise UsageError("APP is required: module:callable or path/to/file.py:callable")
        check_spec(s["app"])
        for text in s["bind"]:
            parse_bind(text)
        if not isinstance(s["workers"], int) or s["workers"] < 1:
            raise UsageError(f"--workers must be >= 1, got {s['workers']!r}")
        for name in ("max_requests", "max_requests_jitter", "max_memory"):
            if not isinstance(s[name], int) or s[name] < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {s[name]!r}")
        if s["umask"] is not None:
            umask = int(str(s["umask"]), 8)
        opts = server_options(s)
    except (UsageError, AppError, ValueError) as exc:
        parser.exit(2, f"prefork: error: {exc}\n")
    except RuntimeError as exc:
        print(f"prefork: error: {exc}", file=sys.stderr)
        return 1
    try:
        logs.configure(s["log_level"], s["error_log"], s["access_log"])
        if s["umask"] is not None:
            os.umask(umask)
        app: Any = load(s["app"]) if s["preload"] else s["app"]
        listeners, paths = open_listeners(s["bind"], int(s["backlog"]))
    except (AppError, RuntimeError, OSError, ValueError) as exc:
        print(f"prefork: error: {exc}", file=sys.stderr)
        return 1
    try:
        drop_privileges(s["user"], s["group"])
        with pidfile(s["pidfile"]):
            return run(
                MasterConfig(
                    app=app,
                    listeners=listeners,
                    workers=s["workers"],
                    server_options=opts,
                    timeout=float(s["timeout"]),
                    graceful_timeout=float(s["graceful_timeout"]),
                    access_log=s["access_log"] is not None,
                    unix_paths=paths,
                    dispatch=s["dispatch"],
                    max_requests=s["max_requests"],
                    max_requests_jitter=s["max_requests_jitter"],
                    max_memory=s["max_memory"] * 1048576,
                    attach_socket=s["attach_socket"],
                    control_socket=s["control_socket"],
                    pidfile=s["pidfile"],
                    reload=lambda: reload_settings(args, config_path, s),
                )
            )
    except (RuntimeError, OSError) as exc:
        print(f"prefork: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for sock in listeners:
            sock.close()
