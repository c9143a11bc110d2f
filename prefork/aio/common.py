"""What the HTTP/1 and HTTP/2 glue share: connection states, the status of a response head,
the plain-text error response, and the names of a connection's two ends (:class:`Endpoints`:
the socket's, or those a PROXY protocol header gave)."""

from __future__ import annotations

import asyncio
import math
import os
import socket
from http import HTTPStatus
from typing import Any

from prefork.headers import Headers
from prefork.protocol.h1response import NO_BODY, ResponseFramer
from prefork.protocol.proxy import Address, ProxyHeader

# Connection states, ordered: >= CLOSED means no more I/O.
SETUP, OPEN, LINGERING, CLOSED, TAKEN = range(5)


def finite(seconds: float) -> float | None:
    """A timeout for ``asyncio.timeout``: None for ``math.inf`` (no limit)."""
    return None if math.isinf(seconds) else seconds


def response_status(headers: Headers) -> int:
    """The ``:status`` of a response head as an int.

    Raises:
        ValueError: it is missing or not a 3-digit string.
    """
    value = headers.get(":status")
    status = _STATUSES.get(value)  # type: ignore[arg-type]
    if status is not None:
        return status
    if value is None:
        raise ValueError("response headers need a ':status'")
    if not (isinstance(value, str) and len(value) == 3 and value.isdigit()):
        raise ValueError(f"':status' must be a 3-digit string, got {value!r}")
    return int(value)


_STATUSES = {str(status): status for status in range(100, 600)}


def error_response(status: int, version: float, date: str, method: bytes = b"GET") -> bytes:
    """A whole HTTP/1 response for ``status`` with its reason phrase as a text body."""
    body = HTTPStatus(status).phrase.encode("ascii") + b"\n"
    framer = ResponseFramer(method, 1.1, False, version)
    fields = [("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(body)))]
    head = framer.head(status, fields, True, date)
    return head if framer.mode == NO_BODY else head + body


def transport_name(transport: asyncio.BaseTransport | None, which: str) -> tuple:
    """``(family, address, port)`` or ``(AF_UNIX, path)`` of one end (``peername`` or
    ``sockname``) of ``transport``; ``(AF_UNSPEC,)`` when it is not known."""
    if transport is None:
        return (socket.AF_UNSPEC,)
    raw = transport.get_extra_info("socket")
    name = transport.get_extra_info(which)
    if raw is None or name is None:
        return (socket.AF_UNSPEC,)
    if raw.family == socket.AF_UNIX:
        return (raw.family, os.fsdecode(name) if name else "")
    return (raw.family, name[0], name[1])


_FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}


def proxy_name(family: str | None, address: Address | None) -> tuple | None:
    """An address of a PROXY header as ``(family, address, port)`` or ``(AF_UNIX, path)``."""
    if address is None or family is None:
        return None
    if isinstance(address, str):
        return (socket.AF_UNIX, address)
    return (_FAMILIES[family], address[0], address[1])


class Endpoints:
    """lua-http's connection methods about its two ends, for both connection kinds.

    Attributes:
        proxy: the PROXY protocol header the connection began with (docs/scale-out.md); None
            without one, or for a ``LOCAL`` one (a balancer's health check).
    """

    transport: asyncio.Transport
    tls: Any
    proxy: ProxyHeader | None = None

    def peername(self) -> tuple:
        """``(family, address, port)`` of the client, ``(AF_UNIX, path)`` on a Unix socket:
        the client a PROXY header names, else the socket's peer."""
        proxy = self.proxy
        if proxy is not None and proxy.source is not None:
            return proxy_name(proxy.family, proxy.source)  # type: ignore[return-value]
        return transport_name(self.transport, "peername")

    def localname(self) -> tuple:
        """``(family, address, port)`` of this end, ``(AF_UNIX, path)`` on a Unix socket: the
        address the client connected to as a PROXY header names it, else the socket's."""
        proxy = self.proxy
        if proxy is not None and proxy.destination is not None:
            return proxy_name(proxy.family, proxy.destination)  # type: ignore[return-value]
        return transport_name(self.transport, "sockname")

    def socket_peername(self) -> tuple:
        """The socket's peer, whatever a PROXY header said (the balancer, behind one)."""
        return transport_name(self.transport, "peername")

    def socket_localname(self) -> tuple:
        """The socket's own address, whatever a PROXY header said."""
        return transport_name(self.transport, "sockname")

    def checktls(self) -> Any:
        """The TLS connection (``OpenSSL.SSL.Connection``); None on a plain connection."""
        return self.tls
