"""Forwarded headers from trusted proxies, sans-I/O (docs/scale-out.md, "Forwarded headers").

A proxy in front of the server says who its client was, which scheme it used and which host
it asked for, in one of two families of request fields:

* ``x-forwarded``: ``X-Forwarded-For`` (a comma list, each proxy appending the address it
  received from), ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Forwarded-Port``: what
  nginx, HAProxy (``option forwardfor``), Traefik, Caddy and cloud balancers send;
* ``forwarded``: RFC 7239 ``Forwarded`` (``for=``, ``proto=``, ``host=`` in one element per
  proxy).

The server reads one family, chosen by ``--forwarded-headers``, never both: a proxy passes the
family it does not write through untouched, so reading that one too would let any client
choose its address. The list is walked from the right (the entry the nearest proxy wrote):
while an entry is a trusted address, step left; the first entry that is not trusted (or the
left-most) is the client. What lies left of it was written by the client or by hops nobody
vouches for, and is never read, not even parsed. The scheme and host are taken from the same
hop as the client (RFC 7239: the element that names it; ``X-Forwarded-*``: the entry at the
client's position from the right, or the left-most when the list is shorter).

:func:`resolve` reads the fields (a bad one is ignored, with the reason returned for a debug
log); :func:`apply` writes what they said into the request's ``:scheme``, ``:authority`` and
``host`` and returns the :class:`Forwarded` record that keeps what was received.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol, TypeVar

from prefork.headers import Headers
from prefork.protocol.rfc7239 import (
    OWS,
    Node,
    check_host,
    check_port,
    check_scheme,
    elements_from_right,
    parse_element,
    parse_node,
    split_authority,
)

X_FORWARDED = "x-forwarded"
FORWARDED = "forwarded"
OFF = "off"
#: The fields each family reads; one of them present is what makes a request worth resolving.
NAMES = {
    X_FORWARDED: frozenset(
        {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"}
    ),
    FORWARDED: frozenset({"forwarded"}),
}
DEFAULT_PORTS = {"http": 80, "https": 443}
T = TypeVar("T")


class Trust(Protocol):
    """What the trust test is: ``host in trusted`` (prefork.protocol.trust.TrustedPeers)."""

    def __contains__(self, host: object) -> bool: ...


class Forwarded(NamedTuple):
    """What trusted proxies said about one request (``stream.forwarded``); immutable.

    Attributes:
        client: the client: an IP address in its usual text form (``192.0.2.1``,
            ``2001:db8::1``), or a name that is not one (RFC 7239 ``unknown``, or an
            obfuscated identifier such as ``_hidden``); None when no proxy named it (the
            connection's peer stands).
        port: the client's port, 0 when not said (or obfuscated).
        version: 4 or 6 when ``client`` is an IP address, else 0.
        scheme: the scheme the client used (``http``/``https``), None when not said.
        authority: the request's new ``:authority`` (host and port the client asked for),
            None when the proxies said neither.
        received_scheme: the request's ``:scheme`` as received (None: it had none).
        received_authority: its ``:authority`` as received (None: it had none); the ``Host``
            field, when the request had one, held the same.
    """

    client: str | None = None
    port: int = 0
    version: int = 0
    scheme: str | None = None
    authority: str | None = None
    received_scheme: str | None = None
    received_authority: str | None = None


class _Said(NamedTuple):
    """One hop's word on the client, checked; the authority is put together from it."""

    client: str | None = None
    port: int = 0
    version: int = 0
    scheme: str | None = None
    host: str | None = None  # host [":" port], checked
    host_port: int | None = None  # X-Forwarded-Port


def resolve(headers: Headers, trusted: Trust, family: str) -> tuple[Forwarded | None, list[str]]:
    """Read the ``family`` fields of a request that came from a trusted peer.

    Args:
        headers: the request's fields.
        trusted: ``address in trusted`` tells a trusted proxy (the peer itself already is).
        family: ``x-forwarded`` or ``forwarded``.

    Returns:
        What the proxies said (None: nothing usable), and why any field was ignored.
    """
    if family == FORWARDED:
        said, problems = _from_forwarded(headers, trusted)
    else:
        said, problems = _from_x_forwarded(headers, trusted)
    if said is None:
        return None, problems
    scheme = said.scheme or headers.get(":scheme") or ""
    authority = _authority(said, headers.get(":authority"), scheme)
    if said.client is None and said.scheme is None and authority is None:
        return None, problems
    return Forwarded(said.client, said.port, said.version, said.scheme, authority), problems


def _authority(said: _Said, received: str | None, scheme: str) -> str | None:
    """The new ``:authority``: the host said (or received) with the port said, ``scheme``'s
    default port left out (RFC 3986 section 6.2.3); None when neither was said."""
    if said.host is None and said.host_port is None:
        return None
    host, port = split_authority(said.host if said.host is not None else received or "")
    if said.host_port is not None:
        port = said.host_port
    if not host:  # a port alone, and no host to put it on
        return None
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return host
    return f"{host}:{port}"


def apply(headers: Headers, forwarded: Forwarded) -> Forwarded:
    """Write ``forwarded``'s scheme and authority into ``headers`` (``:scheme``,
    ``:authority``, and ``host`` where the request has one) and return it with the received
    values kept."""
    received_scheme = headers.get(":scheme")
    received_authority = headers.get(":authority")
    if forwarded.scheme is not None:
        _set_pseudo(headers, ":scheme", forwarded.scheme)
    if forwarded.authority is not None:
        _set_pseudo(headers, ":authority", forwarded.authority)
        for i in _positions(headers, "host"):
            headers.modifyi(i, forwarded.authority)
    return forwarded._replace(
        received_scheme=received_scheme, received_authority=received_authority
    )


def _positions(headers: Headers, name: str) -> list[int]:
    return [i for i, (field, _) in enumerate(headers.items()) if field == name]


def _set_pseudo(headers: Headers, name: str, value: str) -> None:
    """Set pseudo-header ``name``, adding it after the others (they come first) if absent."""
    pairs = headers.items()
    for i, (field, _) in enumerate(pairs):
        if field == name:
            headers.modifyi(i, value, False)
            return
        if field[0] != ":":
            break
    fields = list(headers.each())  # absent (an HTTP/1.0 request without Host): rebuild
    at = next((i for i, f in enumerate(fields) if f[0][0] != ":"), len(fields))
    fields.insert(at, (name, value, False))
    for field_name in {f[0] for f in fields}:
        headers.delete(field_name)
    for field_name, field_value, never in fields:
        headers.append(field_name, field_value, never)


# -- X-Forwarded-* -------------------------------------------------------------------------------


def _from_x_forwarded(headers: Headers, trusted: Trust) -> tuple[_Said | None, list[str]]:
    problems: list[str] = []
    client: Node | None = None
    hop = 1  # the client's position from the right: where its proto/host/port are
    values = _list(headers, "x-forwarded-for")
    if values:
        try:
            client, hop = _walk_x_forwarded_for(values, trusted)
        except ValueError as exc:
            problems.append(f"X-Forwarded-For {exc}")
    scheme = _pick(headers, "x-forwarded-proto", hop, check_scheme, problems)
    host = _pick(headers, "x-forwarded-host", hop, check_host, problems)
    port = _pick(headers, "x-forwarded-port", hop, check_port, problems)
    if client is None and scheme is None and host is None and port is None:
        return None, problems
    address, client_port, version = client or (None, 0, 0)
    return _Said(address, client_port, version, scheme, host, port), problems


def _list(headers: Headers, name: str) -> list[str]:
    """The elements of a comma-list field over all its lines (RFC 9110 section 5.3), empty
    elements dropped (section 5.6.1)."""
    items = [
        item.strip(OWS) for value in headers.get_as_sequence(name) for item in value.split(",")
    ]
    return [item for item in items if item]


def _walk_x_forwarded_for(values: list[str], trusted: Trust) -> tuple[Node, int]:
    """The client named by an X-Forwarded-For list and its position from the right.

    Raises:
        ValueError: an entry the walk reached is not an address (with or without a port),
            ``unknown`` or an obfuscated identifier.
    """
    hop = 1
    while True:
        node = parse_node(values[-hop], bracketed_only=False)
        if hop == len(values) or not _trusted(node, trusted):
            return node, hop
        hop += 1


def _pick(
    headers: Headers, name: str, hop: int, check: Callable[[str], T], problems: list[str]
) -> T | None:
    """The entry of a comma-list field at ``hop`` from the right (the left-most when the list
    is shorter), checked by ``check``; None when absent or bad (bad: noted in ``problems``)."""
    values = _list(headers, name)
    if not values:
        return None
    value = values[max(len(values) - hop, 0)]
    try:
        return check(value)
    except ValueError as exc:
        problems.append(f"{_TITLES[name]} {exc}")
        return None


_TITLES = {
    "x-forwarded-proto": "X-Forwarded-Proto",
    "x-forwarded-host": "X-Forwarded-Host",
    "x-forwarded-port": "X-Forwarded-Port",
}


# -- RFC 7239 Forwarded ----------------------------------------------------------------------------


def _from_forwarded(headers: Headers, trusted: Trust) -> tuple[_Said | None, list[str]]:
    """Walk the ``Forwarded`` elements from the right (RFC 7239 section 5.2: each proxy appends
    one); the element where the walk stops says the client's proto and host."""
    value = ",".join(headers.get_as_sequence("forwarded"))
    client: Node | None = None
    try:
        for element, leftmost in elements_from_right(value):
            params = parse_element(element)
            named = params.get("for")
            if named is not None:
                client = parse_node(named, bracketed_only=True)
            if named is None or leftmost or not _trusted(client, trusted):
                return _said_by(params, client), []
    except ValueError as exc:
        return None, [f"Forwarded {exc}"]
    return None, []  # no element at all


def _said_by(params: dict[str, str], client: Node | None) -> _Said:
    """What the element ``params`` says; ``client``: the node it names, else the last node
    the walk reached.

    Raises:
        ValueError: a bad ``proto`` or ``host``.
    """
    proto, host = params.get("proto"), params.get("host")
    scheme = None if proto is None else check_scheme(proto)
    host = None if host is None else check_host(host)
    address, port, version = client or (None, 0, 0)
    return _Said(address, port, version, scheme, host)


def _trusted(node: Node | None, trusted: Trust) -> bool:
    """Only an address can be trusted: ``unknown`` and obfuscated nodes end the walk."""
    return node is not None and node[2] != 0 and node[0] in trusted
