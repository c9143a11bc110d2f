"""What the HTTP/1 and HTTP/2 glue share: connection states, the status of a response head,
the plain-text error response, and the ``(family, address, port)`` names of a transport."""

from __future__ import annotations

import asyncio
import math
import os
import socket
from http import HTTPStatus

from prefork.headers import Headers
from prefork.protocol.h1response import NO_BODY, ResponseFramer

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
