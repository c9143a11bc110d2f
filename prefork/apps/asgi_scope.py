"""ASGI connection scopes read from a stream's request head, and what the cycles share.

The scope is built once per request from ``stream.request_headers`` (pseudo-headers first), the
stream's versions and its connection's addresses: nothing is read from the body. ``path``
includes ``root_path``, as the ASGI spec says and uvicorn (since 0.26) and Starlette read it.
"""

from __future__ import annotations

import logging
import socket
import weakref
from typing import Any
from urllib.parse import unquote_to_bytes

from prefork.headers import Headers

log = logging.getLogger("prefork.asgi")
_ADDRESSES: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()

ASGI_VERSION = "3.0"
SPEC_VERSION = "2.4"  # send() after the client left raises an OSError (ClientDisconnected)
HTTP_VERSIONS = {1.0: "1.0", 1.1: "1.1", 2.0: "2"}
NO_BODY_STATUSES = frozenset({204, 304})
DEFAULT_PORTS = {"http": 80, "https": 443}


class ClientDisconnected(BrokenPipeError):
    """``send()`` on a connection (or WebSocket) that is closed: the client went away.

    An ``OSError`` subclass, as ASGI 2.4 asks of a server; a ``BrokenPipeError`` so that, when
    the application lets it escape, the server treats it as the ordinary disconnect it is
    (nothing is reported to ``onerror``).
    """


def after_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, a :class:`ClientDisconnected` that
    ``send()`` raised: the application only passed the news on (Starlette's
    ``StreamingResponse`` turns it into its own ``ClientDisconnect``). Not an error to report."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 16:  # bounded: a chain may loop
        if isinstance(current, ClientDisconnected):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def http_scope(stream: Any, root_path: str, state: dict[str, Any] | None) -> dict[str, Any]:
    """The ``http`` scope of the request on ``stream``."""
    scope = _common(stream, root_path, state)
    scope["type"] = "http"
    scope["method"] = stream.request_headers.get(":method")
    scope["scheme"] = _scheme(stream)
    scope["extensions"] = {"http.response.trailers": {}, "http.response.pathsend": {}}
    return scope


def websocket_scope(stream: Any, root_path: str, state: dict[str, Any] | None) -> dict[str, Any]:
    """The ``websocket`` scope of the handshake request on ``stream`` (HTTP/1.1 or RFC 8441)."""
    scope = _common(stream, root_path, state)
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if _scheme(stream) == "https" else "ws"
    offered = stream.request_headers.get_as_sequence("sec-websocket-protocol")
    scope["subprotocols"] = [p.strip() for v in offered for p in v.split(",") if p.strip()]
    scope["extensions"] = {"websocket.http.response": {}}
    return scope


def _common(stream: Any, root_path: str, state: dict[str, Any] | None) -> dict[str, Any]:
    req = stream.request_headers
    # CONNECT without :protocol has no :path: its target is the authority (RFC 9110 9.3.6)
    target = req.get(":path") or req.get(":authority") or ""
    raw, _, query = target.partition("?")
    raw_path = raw.encode("latin-1")  # the fields were decoded as latin-1: bytes as received
    if "%" in raw or not raw.isascii():
        path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    else:
        path = raw
    client, server = addresses(stream)
    return {
        "asgi": {"version": ASGI_VERSION, "spec_version": SPEC_VERSION},
        "http_version": HTTP_VERSIONS.get(stream.peer_version, "1.1"),
        "path": root_path + path,
        "raw_path": root_path.encode("utf-8") + raw_path,
        "query_string": query.encode("latin-1"),
        "root_path": root_path,
        "headers": header_list(req, stream.peer_version >= 2),
        "client": client,
        "server": server,
        "state": {} if state is None else state.copy(),
    }


def header_list(req: Headers, http2: bool) -> list[tuple[bytes, bytes]]:
    """The request's fields as ASGI wants them: lower-case bytes pairs, no pseudo-headers.

    HTTP/2 carries the host in ``:authority`` (RFC 9113 section 8.3.1); applications look for
    ``host``, so it is added, first, when the request has none.
    """
    out = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in req.items() if n[0] != ":"]
    if http2 and not req.has("host"):
        authority = req.get(":authority")
        if authority:
            out.insert(0, (b"host", authority.encode("latin-1")))
    return out


def _scheme(stream: Any) -> str:
    scheme = stream.request_headers.get(":scheme")
    if scheme in ("http", "https"):
        return str(scheme)
    return "https" if stream.checktls() is not None else "http"


def addresses(stream: Any) -> tuple[Any, Any]:
    """The scope's ``client`` and ``server``, worked out once per connection: the stream's
    ``peername()``/``localname()`` ask the transport each time (about 2 µs each), and a
    keep-alive or HTTP/2 connection carries many requests between the same two ends.

    A request that trusted proxies spoke for (``stream.forwarded``) has its own: ``client``
    is the client they named, ``server`` the host and port the client asked for, when they
    said them (docs/scale-out.md)."""
    if stream.forwarded is not None:
        return _forwarded_addresses(stream, stream.forwarded)
    conn = stream.connection
    try:
        return _ADDRESSES[conn]
    except KeyError:
        pass
    except TypeError:  # a connection that cannot be weakly referenced: no cache
        return _address(stream.peername(), peer=True), _address(stream.localname(), peer=False)
    found = _address(stream.peername(), peer=True), _address(stream.localname(), peer=False)
    _ADDRESSES[conn] = found
    return found


def _forwarded_addresses(stream: Any, forwarded: Any) -> tuple[Any, Any]:
    client = _address(stream.peername(), peer=True)
    authority = forwarded.authority
    if authority is None:
        return client, _address(stream.localname(), peer=False)
    if authority.startswith("["):  # an IPv6 literal: the server's host goes without brackets
        host, _, rest = authority[1:].partition("]")
        port = rest[1:]
    else:
        host, _, port = authority.partition(":")
    return client, (host, int(port) if port.isdigit() else DEFAULT_PORTS[_scheme(stream)])


def _address(name: tuple, peer: bool) -> tuple[str, int | None] | None:
    """``(host, port)`` for TCP; for a Unix socket the server is ``(path, None)`` and the client
    None (its path is usually empty), as uvicorn gives them; None when unknown."""
    if len(name) == 3:
        return (name[1], name[2])
    if name[0] == socket.AF_UNIX and not peer and len(name) == 2 and name[1]:
        path = name[1]
        return (path if isinstance(path, str) else path.decode("utf-8", "replace"), None)
    return None


def response_head(status: Any, fields: Any) -> Headers:
    """A response head from an ASGI ``status`` and ``headers`` (names and values as bytes).

    Raises:
        TypeError: a name or value neither bytes nor str; ValueError: a status not a number.
    """
    head = Headers()
    head.append(":status", str(int(status)))
    for name, value in fields:
        head.append(name, value)
    return head


def status_has_body(status: int) -> bool:
    """Whether a response with ``status`` may carry a body (RFC 9110 sections 15.2, 15.3.5,
    15.4.5); a response to HEAD has none either, though its length is the GET's."""
    return status >= 200 and status not in NO_BODY_STATUSES
