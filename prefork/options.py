"""The options of ``new()`` and ``listen()``, typed; defaults and checks from prefork/settings.py.

Every option is checked when the server is made, so a mistake fails at start-up with a
``TypeError`` or ``ValueError`` that names the option, never later inside a connection. The
settings table gives each option its default and its kind (prefork/kinds.py); this module adds
the rules that tie options together (``host`` or ``path``, the port that follows ``tls``).
docs/server.md documents them; ``tests/test_options.py`` keeps the two in step.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from prefork.protocol.http1 import Limits
from prefork.protocol.trust import TrustedPeers
from prefork.settings import DEFAULTS, SETTINGS
from prefork.tlscontext import engine_of


@dataclass(frozen=True)
class ServerOptions:
    """Options of ``prefork.server.new()`` (lua-http names and defaults, plus limits).

    Attributes mirror the seed doc; ``max_*``, ``backlog`` and ``h2_*`` are prefork's own.
    """

    onstream: Callable[..., Any]
    socket: socket.socket | None = DEFAULTS["socket"]
    onerror: Callable[..., Any] | None = DEFAULTS["onerror"]
    tls: bool | None = DEFAULTS["tls"]
    ctx: Any = DEFAULTS["ctx"]
    tls_engine: str = DEFAULTS["tls_engine"]
    connection_setup_timeout: float = DEFAULTS["connection_setup_timeout"]
    intra_stream_timeout: float = DEFAULTS["intra_stream_timeout"]
    version: float | None = DEFAULTS["version"]
    loop: str = DEFAULTS["loop"]
    http: str = DEFAULTS["http"]
    cq: asyncio.AbstractEventLoop | None = DEFAULTS["cq"]
    max_concurrent: float = DEFAULTS["max_concurrent"]
    max_request_line: int = DEFAULTS["max_request_line"]
    max_header_count: int = DEFAULTS["max_header_count"]
    max_head_size: int = DEFAULTS["max_head_size"]
    max_body_size: int | None = DEFAULTS["max_body_size"]
    max_buffered_body: int = DEFAULTS["max_buffered_body"]
    write_timeout: float = DEFAULTS["write_timeout"]
    backlog: int = DEFAULTS["backlog"]
    h2_max_concurrent_streams: int = DEFAULTS["h2_max_concurrent_streams"]
    h2_initial_window_size: int = DEFAULTS["h2_initial_window_size"]
    h2_max_frame_size: int = DEFAULTS["h2_max_frame_size"]
    h2_max_header_list_size: int = DEFAULTS["h2_max_header_list_size"]
    forwarded_allow_ips: TrustedPeers = DEFAULTS["forwarded_allow_ips"]
    health_path: str | None = DEFAULTS["health_path"]
    proxy_protocol: bool = DEFAULTS["proxy_protocol"]
    forwarded_headers: str = DEFAULTS["forwarded_headers"]

    @property
    def limits(self) -> Limits:
        """The parser limits these options set."""
        return Limits(
            self.max_request_line, self.max_header_count, self.max_head_size, self.max_body_size
        )


@dataclass(frozen=True)
class ListenOptions:
    """The extra options of ``prefork.server.listen()``: where to bind."""

    host: str | None = DEFAULTS["host"]
    port: int | None = DEFAULTS["port"]
    path: str | None = DEFAULTS["path"]
    family: socket.AddressFamily | None = DEFAULTS["family"]
    v6only: bool = DEFAULTS["v6only"]
    mode: int | None = DEFAULTS["mode"]
    mask: bool = DEFAULTS["mask"]
    unlink: bool = DEFAULTS["unlink"]
    reuseaddr: bool = DEFAULTS["reuseaddr"]
    reuseport: bool = DEFAULTS["reuseport"]


SERVER_NAMES = frozenset(f.name for f in fields(ServerOptions))
LISTEN_NAMES = frozenset(f.name for f in fields(ListenOptions))


def _checked(options: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """Each option of ``names`` in ``options`` checked by its setting's kind."""
    return {k: SETTINGS[k].check(v) for k, v in options.items() if k in names}


def parse_server_options(options: dict[str, Any], *, listening: bool = False) -> ServerOptions:
    """Validate the options of ``new()`` (``listening``: called from ``listen()``, no socket).

    Raises:
        TypeError: unknown option, or an option of the wrong type.
        ValueError: an option out of range, or a required one missing.
    """
    allowed = (SERVER_NAMES - {"socket"}) | LISTEN_NAMES if listening else SERVER_NAMES
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(unknown)}")
    if options.get("onstream") is None:
        raise ValueError("option 'onstream' is required")
    parsed = ServerOptions(**_checked(options, SERVER_NAMES))
    engine_of(parsed.tls_engine, parsed.ctx)  # a ctx of the other engine: ValueError
    return parsed


def parse_listen_options(options: dict[str, Any]) -> ListenOptions:
    """Validate the binding options of ``listen()`` (see :func:`parse_server_options`)."""
    opts = _checked(options, LISTEN_NAMES)
    host, path = opts.get("host"), opts.get("path")
    if host is None and path is None:
        raise ValueError("option 'host' or 'path' is required")
    if host is not None and path is not None:
        raise ValueError("options 'host' and 'path' exclude each other")
    if opts.get("port") is None and host is not None:
        tls = options.get("tls")
        if tls is None:
            raise ValueError("option 'port' is required when 'tls' is None")
        opts["port"] = 443 if tls else 80
    family = opts.get("family")
    if family is not None and (family == socket.AF_UNIX) != (path is not None):
        raise ValueError("option 'family': AF_UNIX goes with 'path', AF_INET/AF_INET6 with 'host'")
    if opts.get("mask") and opts.get("mode") is None:
        raise ValueError("option 'mask' needs option 'mode'")
    return ListenOptions(**opts)
