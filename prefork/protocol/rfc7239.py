"""The syntax of forwarded headers, sans-I/O: RFC 7239 ``Forwarded`` elements and nodes, and
the checks on what any forwarded field says (a node, a scheme, a host, a port).

Everything here raises ``ValueError`` with a phrase that follows the field's name in a log
line (``Forwarded has an unbalanced quote``); prefork/protocol/forwarded.py decides what to
walk and what to ignore.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from functools import lru_cache

from prefork.protocol.h1head import valid_host

#: X-Forwarded-Proto / RFC 7239 ``proto`` values taken, case-insensitively (RFC 3986 section
#: 3.1), as the request's scheme: a WebSocket's ``ws``/``wss`` is its request's http/https.
SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
OWS = " \t"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2
_QUOTED = re.compile(  # RFC 9110 section 5.6.4: qdtext and quoted-pair
    r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"'
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_OBFUSCATED = re.compile(r"_[0-9A-Za-z._-]+")  # RFC 7239 section 6.3: obfnode, obfport
_PORT = re.compile(r"[0-9]{1,5}")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")  # RFC 3986 dec-octet: no leading zero

Node = tuple[str, int, int]
"""``(address, port, version)``: version 4 or 6 for an IP address, 0 for ``unknown`` or an
obfuscated identifier; port 0 when not given or obfuscated."""


def elements_from_right(value: str) -> Iterator[tuple[str, bool]]:
    """The elements of a ``Forwarded`` value from the right, each with whether it is the
    left-most; empty elements are skipped (RFC 9110 section 5.6.1).

    Commas inside quoted-strings do not split. The value is read right to left so that the
    elements the trusted proxies appended are found whatever a client put on the left: a
    quote ends a quoted-string that the nearest quote before it opens, unless that one is
    escaped (an odd run of backslashes before it).

    Raises:
        ValueError: a quote that nothing opens (only once the reader gets there).
    """
    first = len(value) - len(value.lstrip(OWS + ","))  # where the left-most element starts
    end = i = len(value)
    while i > 0:
        ch = value[i - 1]
        if ch == '"':
            i = _opening_quote(value, i - 1) + 1
        elif ch == ",":
            element = value[i:end].strip(OWS)
            if element:
                yield element, first >= i
            end = i - 1
        i -= 1
    element = value[:end].strip(OWS)
    if element:
        yield element, True


def _opening_quote(value: str, close: int) -> int:
    """The index of the quote that opens the quoted-string closed at ``close``."""
    at = close
    while True:
        at = value.rfind('"', 0, at)
        if at < 0:
            raise ValueError("has an unbalanced quote")
        run = at
        while run > 0 and value[run - 1] == "\\":
            run -= 1
        if (at - run) % 2 == 0:
            return at


def parse_element(element: str) -> dict[str, str]:
    """The parameters of one element (RFC 7239 section 4), names lower-cased, values unquoted.

    ``forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )``, a pair being
    ``token "=" ( token / quoted-string )``. Whitespace around ``;`` is tolerated (the
    grammar has none; what it separates is checked as strictly).

    Raises:
        ValueError: bad syntax, or a parameter given twice in the element (section 4).
    """
    params: dict[str, str] = {}
    at, size = 0, len(element)
    while at < size:
        name = _TOKEN.match(element, at)
        if name is None or element[name.end() : name.end() + 1] != "=":
            raise ValueError(f"has a bad pair at {element[at:]!r}")
        token = _TOKEN.match(element, name.end() + 1)
        value = token or _QUOTED.match(element, name.end() + 1)
        if value is None:
            raise ValueError(f"has a bad value at {element[name.end() + 1 :]!r}")
        key = name[0].lower()
        if key in params:
            raise ValueError(f"gives {key!r} twice in one element")
        params[key] = value[0] if token else _QUOTED_PAIR.sub(r"\1", value[1])
        at = value.end()
        while at < size and element[at] in OWS:
            at += 1
        if at < size and element[at] != ";":
            raise ValueError(f"has a bad pair at {element[at:]!r}")
        while at < size and element[at] in OWS + ";":
            at += 1
    return params


def parse_node(text: str, bracketed_only: bool) -> Node:
    """A node (RFC 7239 section 6): an IPv4 address, an IPv6 address in brackets, ``unknown``
    or an obfuscated identifier, then perhaps ``:`` and a port (a number from 1 to 65535, or
    obfuscated). ``bracketed_only`` False (X-Forwarded-For) also takes an IPv6 address
    without brackets (and so without a port). Addresses come back in their usual text form.

    Raises:
        ValueError: anything else (an IPv6 zone too: RFC 7239's IPv6address has none).
    """
    if len(text) <= 64:  # every address with a port fits; an obfuscated name need not
        return _cached_node(text, bracketed_only)
    return _node(text, bracketed_only)


def _node(text: str, bracketed_only: bool) -> Node:
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"has a bad node {text!r}")
        return _ip(address, 6, text), _node_port(rest[1:], text) if rest else 0, 6
    if text.count(":") > 1:
        if bracketed_only:
            raise ValueError(f"has an IPv6 address without brackets: {text!r}")
        return _ip(text, 6, text), 0, 6
    name, colon, port = text.partition(":")
    number = _node_port(port, text) if colon else 0
    if name.lower() == "unknown":  # an ABNF string: any case (RFC 5234 section 2.3)
        return "unknown", number, 0
    if _OBFUSCATED.fullmatch(name):
        return name, number, 0
    return _ip(name, 4, text), number, 4


# the proxies' own addresses recur on every request, and a client's on each of its requests
_cached_node = lru_cache(maxsize=1024)(_node)


def _ip(address: str, version: int, text: str) -> str:
    if version == 4:
        if _IPV4.fullmatch(address):
            return address  # already in its usual form
        raise ValueError(f"has a bad node {text!r}")
    try:
        if "%" not in address:
            return str(ipaddress.IPv6Address(address))
    except ValueError:
        pass
    raise ValueError(f"has a bad node {text!r}")


def _node_port(text: str, node: str) -> int:
    if _OBFUSCATED.fullmatch(text):
        return 0
    try:
        return check_port(text)
    except ValueError:
        raise ValueError(f"has a bad port in {node!r}") from None


def check_scheme(value: str) -> str:
    """``http``/``https`` for a scheme in :data:`SCHEMES` (any case).

    Raises:
        ValueError: any other scheme.
    """
    scheme = SCHEMES.get(value.lower())
    if scheme is None:
        raise ValueError(f"is not http, https, ws or wss: {value!r}")
    return scheme


def check_host(value: str) -> str:
    """``value`` if it is ``uri-host [ ":" port ]`` (RFC 9110 section 7.2) with a host, an
    IP-literal holding an IPv6 address and a port, if any, from 1 to 65535.

    Raises:
        ValueError: anything else.
    """
    host, port = split_authority(value)
    ok = bool(host) and valid_host(value)
    if ok and host.startswith("["):  # IPvFuture is refused
        try:
            _ip(host[1:-1], 6, value)
        except ValueError:
            ok = False
    if ok and len(value) > len(host):  # a port
        ok = port is not None and _PORT.fullmatch(value[len(host) + 1 :]) is not None
        ok = ok and 0 < port < 65536  # type: ignore[operator]
    if not ok:
        raise ValueError(f"is not a host[:port]: {value!r}")
    return value


def check_port(value: str) -> int:
    """The port ``value`` names: one to five digits, 1 to 65535.

    Raises:
        ValueError: anything else.
    """
    if not _PORT.fullmatch(value) or not 0 < int(value) < 65536:
        raise ValueError(f"is not a port (1-65535): {value!r}")
    return int(value)


def split_authority(authority: str) -> tuple[str, int | None]:
    """``host[:port]`` (an IPv6 literal in brackets, which stay) as ``(host, port)``; the
    port is None when absent or not digits."""
    if authority.startswith("["):
        end = authority.find("]") + 1
        host, port = authority[:end], authority[end + 1 :]
    else:
        host, _, port = authority.partition(":")
    return host, int(port) if port.isdigit() and port.isascii() else None
