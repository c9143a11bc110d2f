"""An HTTP/1 request head read into a :class:`Request` (sans-I/O).

:func:`read_request` takes one complete head, checks it (:func:`~prefork.protocol.h1head.
check_head`: the grammar and the framing rules), has a *splitter* cut its field lines into
``(name, value)`` pairs, and builds the request's :class:`~prefork.headers.Headers` and flags
from them in one pass. Two splitters exist and must agree on every head the checks pass:
:func:`split_fields` (one regular expression, pure Python) and
``prefork.protocol.h1httptools.split_fields`` (llhttp); every check is made here, after the
split, so the choice of splitter changes no answer (docs/performance.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from prefork.errors import ProtocolError
from prefork.headers import Headers
from prefork.protocol.h1head import Limits, check_head, check_target, split_absolute, valid_host

#: Cuts the field lines of a head that ``check_head`` passed into pairs: given the head as
#: text (latin-1), the head's bytes and where its field lines start, returns the
#: ``(name in lower case, value without OWS)`` pairs in order.
Splitter = Callable[[str, bytes, int], list[tuple[str, str]]]

_FIELD = re.compile(  # a field line check_head passed: its name, its value without the OWS
    r"([!#$%&'*+\-.^_`|~0-9a-zA-Z]+):[ \t]*+([^ \t\r\n]*+(?:[ \t]++[^ \t\r\n]++)*+)[ \t]*+\r\n"
)
_MAX_LENGTH = "9223372036854775807"  # 2**63 - 1: a signed 64-bit parser in front reads it too


class Request:
    """A request head: the first event of every request.

    Attributes:
        method: the method, as received (bytes).
        target: the request-target, as received (bytes).
        version: 1.0 or 1.1 (a higher 1.x minor version is served as 1.1, RFC 9110 section
            2.5).
        headers: pseudo-headers first (``:method``, ``:path``, ``:scheme``, ``:authority``:
            RFC 9113 section 8.3.1 applied to HTTP/1), then the fields in order.
        keep_alive: whether the request lets the connection persist (RFC 9112 section 9.3).
        expects_continue: an HTTP/1.1 request with ``Expect: 100-continue``.
        body_length: the Content-Length (0: no body), or None for a chunked body.
        upgrade: whether it has an ``Upgrade`` field (RFC 9110 section 7.8), so that the glue
            looks further (``h2c``, WebSocket) only then.
    """

    __slots__ = (
        "body_length",
        "expects_continue",
        "headers",
        "keep_alive",
        "method",
        "target",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: float,
        headers: Headers,
        keep_alive: bool,
        expects_continue: bool,
        body_length: int | None,
        upgrade: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expects_continue = expects_continue
        self.body_length = body_length
        self.upgrade = upgrade

    def __repr__(self) -> str:
        return f"<Request {self.method!r} {self.target!r} HTTP/{self.version}>"


def split_fields(text: str, head: bytes, start: int) -> list[tuple[str, str]]:
    """The pure-Python :data:`Splitter`: one regular expression over the field lines."""
    return [(name.lower(), value) for name, value in _FIELD.findall(text, start)]


def read_request(head: bytes, limits: Limits, scheme: str, split: Splitter) -> Request:
    """Read one complete request head (request line to blank line, CRLF line ends).

    Args:
        limits: the server's (``max_header_count`` and ``max_body_size`` apply here).
        scheme: the connection's, ``http`` or ``https`` (``:scheme`` of origin-form targets).
        split: the :data:`Splitter`.

    Raises:
        ProtocolError: 400, 413, 431, 501 or 505; when a head has several faults, the one
            reported is the first of: grammar and ambiguous framing, a Content-Length that is
            no number or a coding other than chunked, several or a missing Host, the
            version, the field count, the target, then the fields in order.
    """
    match, lowered = check_head(head)
    method, target, digits = match.groups()
    text = head.decode("latin-1")
    start = len(method) + 1
    path = text[start : start + len(target)]
    fields = split(text, head, start + len(target) + 11)  # past the request line
    hosts = _values(fields, "host") if b"\nhost:" in lowered else []
    framing = None
    if b"\ncontent-length:" in lowered or b"\ntransfer-encoding:" in lowered:
        framing = _framing(fields, lowered)
        if framing[0] == "transfer-encoding":  # its value reaches the app in lower case
            fields = [(n, "chunked") if n == "transfer-encoding" else (n, v) for n, v in fields]
    text_method = text[: start - 1]
    origin = target[:1] == b"/" and method != b"CONNECT"
    if not (
        origin
        and len(hosts) == 1
        and (digits == b"1.1" or digits == b"1.0")
        and len(fields) <= limits.max_header_count
    ):  # else nothing of the request line can fail
        _check_line(text_method, path, digits, origin, len(hosts), len(fields), limits)
    version = 1.0 if digits == b"1.0" else 1.1
    if framing is not None:
        length = _body_length(framing, version, limits, hosts, lowered)
    elif hosts and not valid_host(hosts[0]):
        raise ProtocolError("invalid Host")
    else:
        length = 0
    if origin:
        pairs = [(":method", text_method), (":path", path), (":scheme", scheme)]
        if hosts:
            pairs.append((":authority", hosts[0]))
    else:
        pairs, fields = _pseudo(text_method, path, scheme, hosts, fields)
    pairs += fields
    keep_alive, expects = version == 1.1, False
    if b"\nconnection:" in lowered or b"\nexpect:" in lowered:
        keep_alive, expects = _flags(fields, lowered, version)
    headers = Headers.of_lowercase(pairs)
    upgrade = b"\nupgrade:" in lowered
    return Request(method, target, version, headers, keep_alive, expects, length, upgrade)


def _check_line(
    method: str, target: str, digits: bytes, origin: bool, hosts: int, fields: int, limits: Limits
) -> None:
    """The checks of the request line and the Host count, in their order (see read_request)."""
    if hosts > 1:
        raise ProtocolError("more than one Host")  # RFC 9112 section 3.2: 400
    if not hosts and digits == b"1.1":
        raise ProtocolError("missing Host")
    if digits[:2] != b"1.":  # RFC 9110 section 15.6.6
        raise ProtocolError("HTTP version not supported", 505)
    if fields > limits.max_header_count:
        raise ProtocolError("too many header fields", 431)
    if not origin:
        check_target(method, target)
    if not hosts and digits > b"1.1":
        # RFC 9110 section 2.5: served as 1.1, so RFC 9112 section 3.2 applies
        raise ProtocolError("missing Host")


def _values(fields: list[tuple[str, str]], name: str) -> list[str]:
    """The values of the fields called ``name``."""
    values = []
    for n, v in fields:
        if n == name:
            values.append(v)
    return values


def _pseudo(
    method: str, target: str, scheme: str, hosts: list[str], fields: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The pseudo-headers of a request whose target is not origin-form, and its fields."""
    pairs = [(":method", method)]
    if method == "CONNECT":  # RFC 9113 section 8.5: no :path, :authority from the target
        pairs.append((":authority", target))
    elif target == "*":
        pairs += ((":path", target), (":scheme", scheme))
        if hosts:
            pairs.append((":authority", hosts[0]))
    else:
        # RFC 9112 section 3.2.2: the target's authority; a Host field gets its value
        target_scheme, authority, path = split_absolute(method, target)
        pairs += ((":path", path), (":scheme", target_scheme), (":authority", authority))
        fields = [("host", authority) if n == "host" else (n, v) for n, v in fields]
    return pairs, fields


def _framing(fields: list[tuple[str, str]], lowered: bytes) -> tuple[str, str]:
    """The framing field, ``(name, value)``, of a head with one: check_head let one kind
    through, and at most one Content-Length. Raises for a length that is no number (400) and
    for a transfer coding other than chunked (501: RFC 9112 section 6.1 lets a server refuse
    it)."""
    if b"\ncontent-length:" in lowered:
        value = _values(fields, "content-length")[0]
        if not (value.isascii() and value.isdigit()):
            raise ProtocolError("Content-Length is not a number")
        return "content-length", value
    codings = _values(fields, "transfer-encoding")
    if len(codings) > 1 or codings[0].lower() != "chunked":
        raise ProtocolError("transfer coding other than chunked", 501)
    return "transfer-encoding", "chunked"


def _body_length(
    framing: tuple[str, str] | None,
    version: float,
    limits: Limits,
    hosts: list[str],
    lowered: bytes,
) -> int | None:
    """The body's length (None: chunked), or the first fault of the Host and framing fields
    in the order they came (400, 413)."""
    bad_host = hosts and not valid_host(hosts[0])  # RFC 9112 section 3.2: 400
    if bad_host and (
        framing is None or lowered.find(b"\nhost:") < lowered.find(b"\n" + framing[0].encode())
    ):
        raise ProtocolError("invalid Host")  # it came first
    if framing is None:
        return 0
    name, value = framing
    if name == "transfer-encoding":
        if version == 1.0:
            # RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
            raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
    else:
        if len(value) > 18 and (len(value) > 19 or value > _MAX_LENGTH):
            # RFC 9110 section 8.6: anticipate large numerals; a proxy in front that wraps
            # at 64 bits would frame the body otherwise (smuggling)
            raise ProtocolError("Content-Length too large to be safe")
        length = int(value)
        limit = limits.max_body_size
        if limit is not None and length > limit:
            raise ProtocolError("request body too large", 413)
    if bad_host:
        raise ProtocolError("invalid Host")
    return None if name == "transfer-encoding" else length


def _flags(fields: list[tuple[str, str]], lowered: bytes, version: float) -> tuple[bool, bool]:
    """``keep_alive`` (RFC 9112 section 9.3: 1.1 persists unless "close", 1.0 only with
    "keep-alive") and ``expects_continue`` (RFC 9110 section 10.1.1, the last Expect)."""
    tokens: set[str] = set()
    if b"\nconnection:" in lowered:
        for name, value in fields:
            if name == "connection":
                tokens.update(t.strip(" \t") for t in value.lower().split(","))
    keep_alive = "close" not in tokens if version == 1.1 else "keep-alive" in tokens
    expects = False
    if version == 1.1 and b"\nexpect:" in lowered:
        expect = _values(fields, "expect")[-1]
        expects = expect.lower() == "100-continue"
    return keep_alive, expects
