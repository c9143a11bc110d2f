"""The WSGI environ of a request and the checks on a response head (PEP 3333), no I/O.

:func:`environ` builds the per-request keys from the stream's ``request_headers`` and its
addresses on top of the constant keys of :func:`base_environ`; :func:`response_head` checks
what the application passes to ``start_response`` and turns it into a ``Headers`` head.
:class:`ErrorStream` is ``wsgi.errors``.
"""

from __future__ import annotations

import logging
import re
import socket
import weakref
from typing import Any
from urllib.parse import unquote_to_bytes

from prefork.headers import Headers
from prefork.stream import Stream

log = logging.getLogger("prefork.wsgi")

#: Per connection (the environ is built on the loop's thread only).
_REMOTES: weakref.WeakKeyDictionary[Any, tuple[str, str] | None] = weakref.WeakKeyDictionary()
PROTOCOLS = {1.0: "HTTP/1.0", 1.1: "HTTP/1.1", 2.0: "HTTP/2"}
DEFAULT_PORTS = {"http": "80", "https": "443"}
#: RFC 9110 section 7.6.1: fields meant for one connection, which a WSGI application must not
#: send (PEP 3333, "Other HTTP Features"); the server decides framing and persistence.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS = re.compile(r"([2-9][0-9][0-9])(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class ErrorStream:
    """``wsgi.errors``: text written to it goes to the ``prefork.wsgi`` logger, a record per
    line (blank lines are dropped). Shared by every request; safe from any thread."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.error("%s", line)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Nothing to flush: every line was logged when written."""


def base_environ(root_path: str, file_wrapper: type) -> dict[str, Any]:
    """The keys that are the same for every request of one adapter."""
    return {
        "SCRIPT_NAME": root_path,
        "wsgi.version": (1, 0),
        "wsgi.errors": ErrorStream(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": file_wrapper,
    }


def clean_root_path(root_path: str) -> str:
    """``/app/`` -> ``/app``, ``/`` -> ``""`` (SCRIPT_NAME never ends with a slash)."""
    root_path = root_path.rstrip("/")
    if root_path and not root_path.startswith("/"):
        raise ValueError(f"root_path must start with '/': {root_path!r}")
    return root_path


def environ(base: dict[str, Any], stream: Stream) -> dict[str, Any]:
    """The environ of ``stream``'s request (without ``wsgi.input``), from ``base``.

    PATH_INFO is the percent-decoded path as latin-1 text (PEP 3333 "Unicode Issues"), with
    SCRIPT_NAME removed from its front when it is there. A request field whose name holds
    ``_`` is left out: ``x_user`` would otherwise pass for ``X-User`` (gunicorn and nginx drop
    them too).
    """
    req = stream.request_headers
    env = base.copy()
    scheme = req.get(":scheme") or ("https" if stream.checktls() is not None else "http")
    target = req.get(":path") or ""
    path, _, query = target.partition("?")
    path_info = unquote_to_bytes(path).decode("latin-1")
    script = env["SCRIPT_NAME"]
    if script and (path_info == script or path_info.startswith(script + "/")):
        path_info = path_info[len(script) :]
    env["REQUEST_METHOD"] = req.get(":method")
    env["PATH_INFO"] = path_info
    env["QUERY_STRING"] = query
    env["RAW_URI"] = env["REQUEST_URI"] = target
    env["SERVER_PROTOCOL"] = PROTOCOLS.get(stream.peer_version, f"HTTP/{stream.peer_version:g}")
    env["wsgi.url_scheme"] = scheme
    _add_fields(env, req)
    authority = req.get(":authority")
    if authority is not None and "HTTP_HOST" not in env:  # HTTP/2 carries no Host field
        env["HTTP_HOST"] = authority
    env["SERVER_NAME"], env["SERVER_PORT"] = _server(authority, stream, scheme)
    remote = _remote(stream)
    if remote is not None:
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = remote
    return env


def _remote(stream: Stream) -> tuple[str, str] | None:
    """REMOTE_ADDR and REMOTE_PORT (None on a Unix socket), worked out once per connection:
    ``peername()`` costs microseconds, and a keep-alive connection carries many requests.
    A request that trusted proxies spoke for has its own (the client they named)."""
    if stream.forwarded is not None:
        return _peer(stream.peername())
    conn = stream.connection
    try:
        return _REMOTES[conn]
    except KeyError:
        pass
    remote = _REMOTES[conn] = _peer(stream.peername())
    return remote


def _peer(peer: tuple) -> tuple[str, str] | None:
    return (peer[1], str(peer[2])) if len(peer) == 3 else None


def _add_fields(env: dict[str, Any], req: Headers) -> None:
    for name, value in req.items():
        if name[0] == ":":
            continue
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        elif "_" in name:
            continue
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if key in env:  # RFC 9110 section 5.3; cookies: RFC 9113 section 8.2.3
            value = env[key] + ("; " if key == "HTTP_COOKIE" else ", ") + value
        env[key] = value


def _server(authority: str | None, stream: Stream, scheme: str) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT: from Host (``:authority``), else this end's address."""
    if authority:
        if authority.startswith("["):  # an IPv6 literal
            host, _, rest = authority[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = authority.partition(":")
        return host, port or DEFAULT_PORTS.get(scheme, "80")
    local = stream.localname()
    if len(local) == 3 and local[0] in (socket.AF_INET, socket.AF_INET6):
        return local[1], str(local[2])
    return "localhost", DEFAULT_PORTS.get(scheme, "80")


def response_head(status: Any, headers: Any) -> Headers:
    """The response head for ``start_response(status, headers)``.

    Raises:
        TypeError: ``status`` or a name or value is not a ``str``, a header is not a pair.
        ValueError: a status that is not ``"NNN reason"`` with NNN from 200 to 999 (a WSGI app
            sends no 1xx), a field name that is not a token, a value with control
            characters or outside latin-1, a hop-by-hop field, a bad ``content-length``.
    """
    if not isinstance(status, str):
        raise TypeError(f"status must be a str, not {type(status).__name__}")
    match = _STATUS.fullmatch(status)
    if match is None:
        raise ValueError(f"status must be 'NNN reason' with NNN from 200 to 999: {status!r}")
    head = Headers()
    head.append(":status", match[1])
    for field in headers:
        name, value = field  # ValueError/TypeError unless a pair
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header names and values must be str: {field!r}")
        lower = name.lower()
        if _TOKEN.fullmatch(name) is None:
            raise ValueError(f"header name is not a token: {name!r}")
        if lower in HOP_BY_HOP:
            raise ValueError(f"hop-by-hop header {name!r} is not allowed (PEP 3333)")
        if _BAD_VALUE.search(value) or not (value.isascii() or _latin1(value)):
            raise ValueError(f"header {name!r} has a control or non-latin-1 character")
        if lower == "content-length" and not (value.isdigit() and value.isascii()):
            raise ValueError(f"content-length must be digits: {value!r}")
        head.append(lower, value)
    return head


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
