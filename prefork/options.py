"""The options of ``new()`` and ``listen()``: one typed, validated, documented table.

Every option is checked when the server is made, so a mistake fails at start-up with a
``TypeError`` or ``ValueError`` that names the option, never later inside a connection.
docs/server.md lists the same options; ``tests/test_options.py`` keeps the two in step.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from prefork.protocol.http1 import Limits

VERSIONS = (None, 1.0, 1.1, 2)


@dataclass(frozen=True)
class ServerOptions:
    """Options of ``prefork.server.new()`` (lua-http names and defaults, plus limits).

    Attributes mirror the seed doc; ``max_*`` and ``backlog`` are prefork's own additions.
    """

    onstream: Callable[..., Any]
    socket: socket.socket | None = None
    onerror: Callable[..., Any] | None = None
    tls: bool | None = None
    ctx: Any = None
    connection_setup_timeout: float = 10.0
    intra_stream_timeout: float = 10.0
    version: float | None = None
    cq: asyncio.AbstractEventLoop | None = None
    max_concurrent: float = math.inf
    max_request_line: int = 8190
    max_header_count: int = 100
    max_head_size: int = 65536
    max_body_size: int | None = None
    backlog: int = 1024
    h2_max_concurrent_streams: int = 100
    h2_initial_window_size: int = 65535
    h2_max_frame_size: int = 16384
    h2_max_header_list_size: int = 65536

    @property
    def limits(self) -> Limits:
        """The parser limits these options set."""
        return Limits(
            self.max_request_line, self.max_header_count, self.max_head_size, self.max_body_size
        )


@dataclass(frozen=True)
class ListenOptions:
    """The extra options of ``prefork.server.listen()``: where to bind."""

    host: str | None = None
    port: int | None = None
    path: str | None = None
    family: socket.AddressFamily | None = None
    v6only: bool = False
    mode: int | None = None
    mask: bool = False
    unlink: bool = False
    reuseaddr: bool = True
    reuseport: bool = False


_SERVER_NAMES = {f.name for f in fields(ServerOptions)}
_LISTEN_NAMES = {f.name for f in fields(ListenOptions)}
_FAMILIES = {
    "AF_INET": socket.AF_INET,
    "AF_INET6": socket.AF_INET6,
    "AF_UNIX": socket.AF_UNIX,
}


def _number(name: str, value: Any, *, minimum: float = 0, allow_inf: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"option {name!r} must be a number, got {type(value).__name__}")
    if math.isnan(value) or value < minimum or (not allow_inf and math.isinf(value)):
        raise ValueError(f"option {name!r} must be a number >= {minimum}, got {value!r}")
    return value


def _integer(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"option {name!r} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"option {name!r} must be >= {minimum}, got {value!r}")
    return value


def _optional_bool(name: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"option {name!r} must be True, False or None, got {value!r}")
    return value


def _check_unknown(options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(unknown)}")


def parse_server_options(options: dict[str, Any], *, listening: bool = False) -> ServerOptions:
    """Validate the options of ``new()`` (``listening``: called from ``listen()``, no socket).

    Raises:
        TypeError: unknown option, or an option of the wrong type.
        ValueError: an option out of range, or a required one missing.
    """
    allowed = _SERVER_NAMES - {"socket"} if listening else _SERVER_NAMES
    _check_unknown(options, allowed | (_LISTEN_NAMES if listening else set()))
    if "onstream" not in options or options["onstream"] is None:
        raise ValueError("option 'onstream' is required")
    opts = {k: v for k, v in options.items() if k in _SERVER_NAMES}
    for name in ("onstream", "onerror"):
        if opts.get(name) is not None and not callable(opts[name]):
            raise TypeError(f"option {name!r} must be callable")
    onstream = opts["onstream"]
    if not (
        asyncio.iscoroutinefunction(onstream)
        or asyncio.iscoroutinefunction(type(onstream).__call__)
    ):
        raise TypeError(
            "option 'onstream' must be an async function: async def onstream(server, stream)"
        )
    sock = opts.get("socket")
    if sock is not None and not isinstance(sock, socket.socket):
        raise TypeError(f"option 'socket' must be a socket.socket, got {type(sock).__name__}")
    _optional_bool("tls", opts.get("tls"))
    ctx = opts.get("ctx")
    if ctx is not None:
        from OpenSSL import SSL

        if not isinstance(ctx, SSL.Context):
            raise TypeError("option 'ctx' must be an OpenSSL.SSL.Context")
    for name in ("connection_setup_timeout", "intra_stream_timeout"):
        if name in opts:
            opts[name] = float(_number(name, opts[name]))
    version = opts.get("version")
    if isinstance(version, bool) or version not in VERSIONS:
        raise ValueError(f"option 'version' must be one of None, 1.0, 1.1, 2; got {version!r}")
    if version is not None:
        opts["version"] = float(version)
    cq = opts.get("cq")
    if cq is not None and not isinstance(cq, asyncio.AbstractEventLoop):
        raise TypeError(f"option 'cq' must be an asyncio event loop, got {type(cq).__name__}")
    if "max_concurrent" in opts:
        _number("max_concurrent", opts["max_concurrent"], minimum=1)
    for name in ("max_request_line", "max_header_count", "max_head_size", "backlog"):
        if name in opts:
            _integer(name, opts[name])
    _check_h2_settings(opts)
    if opts.get("max_body_size") is not None:
        _integer("max_body_size", opts["max_body_size"], minimum=0)
    return ServerOptions(**opts)


# RFC 9113 section 6.5.2: the ranges each HTTP/2 setting may take.
_H2_RANGES = {
    "h2_max_concurrent_streams": (1, 2**31 - 1),
    "h2_initial_window_size": (65535, 2**31 - 1),  # smaller would slow every upload
    "h2_max_frame_size": (16384, 2**24 - 1),
    "h2_max_header_list_size": (1024, 2**31 - 1),
}


def _check_h2_settings(opts: dict[str, Any]) -> None:
    for name, (low, high) in _H2_RANGES.items():
        if name in opts:
            _integer(name, opts[name], minimum=low)
            if opts[name] > high:
                raise ValueError(f"option {name!r} must be <= {high}, got {opts[name]!r}")


def parse_listen_options(options: dict[str, Any]) -> ListenOptions:
    """Validate the binding options of ``listen()`` (see :func:`parse_server_options`)."""
    opts = {k: v for k, v in options.items() if k in _LISTEN_NAMES}
    host, path, port = opts.get("host"), opts.get("path"), opts.get("port")
    if host is not None and not isinstance(host, str):
        raise TypeError("option 'host' must be a str")
    if path is not None and not isinstance(path, str | bytes):
        raise TypeError("option 'path' must be a str")
    if host is None and path is None:
        raise ValueError("option 'host' or 'path' is required")
    if host is not None and path is not None:
        raise ValueError("options 'host' and 'path' exclude each other")
    if port is not None:
        _integer("port", port, minimum=0)
        if port > 65535:
            raise ValueError(f"option 'port' must be 0..65535, got {port}")
    elif host is not None:
        tls = options.get("tls")
        if tls is None:
            raise ValueError("option 'port' is required when 'tls' is None")
        opts["port"] = 443 if tls else 80
    family = opts.get("family")
    if family is not None:
        if isinstance(family, str):
            if family not in _FAMILIES:
                raise ValueError(
                    f"option 'family' must be one of {sorted(_FAMILIES)}, got {family!r}"
                )
            family = _FAMILIES[family]
        elif family not in _FAMILIES.values():
            raise ValueError(
                f"option 'family' must be AF_INET, AF_INET6 or AF_UNIX, got {family!r}"
            )
        if (family == socket.AF_UNIX) != (path is not None):
            raise ValueError(
                "option 'family': AF_UNIX goes with 'path', AF_INET/AF_INET6 with 'host'"
            )
        opts["family"] = socket.AddressFamily(family)
    mode = opts.get("mode")
    if mode is not None:
        if isinstance(mode, str):
            try:
                mode = int(mode, 8)
            except ValueError:
                raise ValueError(
                    f"option 'mode' must be an octal permission, got {mode!r}"
                ) from None
        _integer("mode", mode, minimum=0)
        if mode > 0o7777:
            raise ValueError(f"option 'mode' must be a permission like 0o660, got {oct(mode)}")
        opts["mode"] = mode
    for name in ("v6only", "mask", "unlink", "reuseaddr", "reuseport"):
        if name in opts and not isinstance(opts[name], bool):
            raise TypeError(f"option {name!r} must be a bool, got {opts[name]!r}")
    if opts.get("mask") and mode is None:
        raise ValueError("option 'mask' needs option 'mode'")
    return ListenOptions(**opts)
