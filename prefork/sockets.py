"""Listening sockets from ``listen()`` options: TCP over IPv4/IPv6 or a Unix socket path.

Kept apart from the server so the master can bind the same way before it forks workers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import socket
import stat

from prefork.options import ListenOptions


def _resolve(opts: ListenOptions) -> tuple[socket.AddressFamily, tuple]:
    family = opts.family or socket.AF_UNSPEC
    infos = socket.getaddrinfo(
        opts.host, opts.port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    fam, _, _, _, addr = infos[0]
    return fam, addr


def bind(opts: ListenOptions, backlog: int) -> socket.socket:
    """Create, bind and listen; the socket is non-blocking and close-on-exec.

    Raises:
        OSError: the address cannot be resolved or bound (e.g. ``EADDRINUSE``).
    """
    if opts.path is not None:
        return _bind_unix(opts, backlog)
    family, addr = _resolve(opts)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if opts.reuseaddr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if opts.reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(opts.v6only))
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_unix(opts: ListenOptions, backlog: int) -> socket.socket:
    path = os.fsdecode(opts.path)  # type: ignore[arg-type]
    if opts.unlink:
        # Only a stale socket is removed: unlinking a regular file by mistake loses data.
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_mask = None
        if opts.mask and opts.mode is not None:
            # Create the socket with its final permissions: no window where it is too open.
            old_mask = os.umask(0o777 & ~opts.mode)
        try:
            sock.bind(path)
        finally:
            if old_mask is not None:
                os.umask(old_mask)
        if opts.mode is not None:
            os.chmod(path, opts.mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def is_listening(sock: socket.socket) -> bool:
    """Whether ``listen()`` was already called on ``sock`` (SO_ACCEPTCONN)."""
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False


def set_nodelay(sock: socket.socket) -> None:
    """TCP_NODELAY on a TCP socket, always: not only when asyncio thinks it is TCP (a socket
    rebuilt from a passed fd may not look it), else delayed ACKs cost ~40 ms a request
    (docs/master.md). Not asking ``sock.family`` first (it makes an enum per call, 0.5 us):
    a Unix socket just refuses, and errors are left alone."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def localname(sock: socket.socket | None) -> tuple:
    """lua-http's localname: (family, address, port), (AF_UNIX, path) or (AF_UNSPEC,)."""
    if sock is None or sock.fileno() < 0:
        return (socket.AF_UNSPEC,)
    try:
        name = sock.getsockname()
    except OSError:
        return (socket.AF_UNSPEC,)
    family = sock.family
    if family == socket.AF_UNIX:
        return (family, os.fsdecode(name) if name else name)
    return (family, name[0], name[1])


def unlink_socket(path: str) -> None:
    """Remove ``path`` if it is a Unix socket (a closed server's own); errors are ignored."""
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


def bind_within(opts: ListenOptions, backlog: int, timeout: float | None) -> socket.socket:
    """Bind, giving name resolution (getaddrinfo cannot time out) at most ``timeout`` seconds.

    Raises:
        OSError: as :func:`bind`.
        TimeoutError: resolving took longer than ``timeout``.
    """
    if timeout is None or opts.path is not None:
        return bind(opts, backlog)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(bind, opts, backlog)
    pool.shutdown(wait=False)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.add_done_callback(_close_late_socket)
        raise TimeoutError(f"binding {opts.host!r} took longer than {timeout} s") from None


def _close_late_socket(future: concurrent.futures.Future[socket.socket]) -> None:
    if future.exception() is None:
        future.result().close()
