"""What the ``prefork`` command does before its master runs: the workers' server options (and
their TLS context), the listening sockets, the privilege drop and the pidfile.

``open_listeners`` (and ``open_all``, which also says which listeners expect a PROXY protocol
header) are also for programs that run ``prefork.process.master.Master`` themselves
(docs/master.md, "Library use").
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import socket
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from prefork import sockets, tlscontext
from prefork.netkinds import address, proxy_marked
from prefork.options import ListenOptions
from prefork.process import systemd
from prefork.protocol.tlscommon import alpn_protocols
from prefork.settings import BOTH, SERVER, SETTINGS

WORKER_OPTIONS = tuple(s.name for s in SETTINGS.values() if s.layer in (SERVER, BOTH) and s.flags)


def server_options(settings: dict[str, Any]) -> dict[str, Any]:
    """Every worker's ``prefork.server.new()`` options from the command's settings.

    Raises:
        RuntimeError: ``certfile`` or ``keyfile`` cannot be read or loaded.
    """
    opts = {name: settings[name] for name in WORKER_OPTIONS}
    version = opts["version"]
    engine = tlscontext.engine_of(opts["tls_engine"], None)  # auto: the ssl module's
    alpn = alpn_protocols(version, h2=version in (None, 2))
    if settings["certfile"]:
        opts["ctx"] = tlscontext.load(engine, settings["certfile"], settings["keyfile"], alpn)
    elif opts["tls"] is not False:
        # One generated certificate for the whole pool (made before the fork), not one per
        # worker: clients that pin it see the same certificate whichever worker answers.
        opts["ctx"] = tlscontext.generated(engine, None, alpn)
        logging.getLogger("prefork").warning(
            "TLS with a generated self-signed certificate: clients will not trust it; "
            "pass --certfile/--keyfile (see docs/tls.md)"
        )
    return opts


def parse_bind(text: str) -> ListenOptions | int:
    """``HOST:PORT``, ``[V6]:PORT``, ``unix:PATH`` -> ListenOptions; ``fd://N`` -> N (a
    ``proxy+`` mark is passed over: see :func:`open_all`).

    Raises:
        ValueError: none of these forms (see ``prefork.netkinds.address``).
    """
    form, where, port = address(text)
    if form == "fd":
        return where
    if form == "unix":
        return ListenOptions(path=where, unlink=True)
    return ListenOptions(host=where, port=port, reuseaddr=True)


class Listeners(NamedTuple):
    """What :func:`open_all` opened: the sockets (in ``--bind`` order, unless systemd's), the
    Unix socket paths to remove at exit, and the sockets whose connections start with a PROXY
    protocol header (``MasterConfig.proxy_listeners``)."""

    sockets: list[socket.socket]
    unix_paths: list[str]
    proxied: list[socket.socket]


def open_listeners(binds: Sequence[str], backlog: int) -> tuple[list[socket.socket], list[str]]:
    """Bind every address, or take the sockets of an old master (USR2: ``PREFORK_FDS``) or of
    systemd (``LISTEN_FDS``); returns the sockets and the unix paths to remove at exit.

    Raises:
        ValueError: an address of the wrong form. RuntimeError: an address cannot be bound.
    """
    found = open_all(binds, backlog)
    return found.sockets, found.unix_paths


def open_all(binds: Sequence[str], backlog: int, proxy_protocol: bool = False) -> Listeners:
    """:func:`open_listeners`, and which listeners expect a PROXY protocol header: all of them
    with ``proxy_protocol`` (``--proxy-protocol``), else those of the binds marked ``proxy+``.
    An old master's sockets come in ``--bind`` order (it was started with the same binds);
    systemd's replace the binds, so their marks cannot apply (a warning says so).

    Raises:
        ValueError: an address of the wrong form. RuntimeError: an address cannot be bound.
    """
    marked = [proxy_marked(b)[0] for b in binds]
    passed = os.environ.pop("PREFORK_FDS", "")
    if passed:
        socks = [socket.socket(fileno=int(fd)) for fd in passed.split(",")]
        names = [s.getsockname() for s in socks if s.family == socket.AF_UNIX]
        paths = [n for n in names if isinstance(n, str) and n]
    else:
        socks = systemd.listen_fds()
        paths = []
        if socks and any(marked) and not proxy_protocol:
            logging.getLogger("prefork").warning(
                "socket activation: --bind (and its proxy+ marks) is ignored; "
                "use --proxy-protocol for a PROXY protocol on every socket"
            )
            marked = []
        elif not socks:
            socks, paths = _bind_all(binds, backlog)
    if proxy_protocol:
        return Listeners(socks, paths, list(socks))
    if len(marked) != len(socks):
        marked = []  # an old master with other binds: a restart applies new marks
    return Listeners(socks, paths, [s for s, m in zip(socks, marked, strict=False) if m])


def _bind_all(binds: Sequence[str], backlog: int) -> tuple[list[socket.socket], list[str]]:
    specs = [parse_bind(b) for b in binds]
    listeners: list[socket.socket] = []
    paths: list[str] = []
    try:
        for text, spec in zip(binds, specs, strict=True):
            listeners.append(_listen(text, spec, backlog))
            if isinstance(spec, ListenOptions) and spec.path is not None:
                paths.append(spec.path)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners, paths


def _listen(text: str, spec: ListenOptions | int, backlog: int) -> socket.socket:
    if isinstance(spec, int):
        sock = socket.socket(fileno=spec)
        if not sockets.is_listening(sock):
            sock.listen(backlog)
        return sock
    try:
        return sockets.bind(spec, backlog)
    except OSError as exc:
        raise RuntimeError(f"cannot bind {text}: {exc.strerror or exc}") from None


def drop_privileges(user: str | None, group: str | None) -> None:
    """Switch group then user (after binding: low ports need root only to bind).

    Raises:
        RuntimeError: no such user or group, or not allowed to switch.
    """
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
