"""Forwarded headers, the pure half: prefork/protocol/forwarded.py and rfc7239.py.

Requests are ``Headers`` as the glue builds them (pseudo-headers first) from a peer that is
trusted; the trust list is a real ``TrustedPeers``. The end-to-end tests, through real servers,
ASGI, WSGI, HTTP/2 and a master, are in tests/test_forwarded_serve.py.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefork.headers import Headers
from prefork.protocol import forwarded
from prefork.protocol.forwarded import FORWARDED, X_FORWARDED, Forwarded, apply, resolve
from prefork.protocol.rfc7239 import elements_from_right, parse_element, parse_node
from prefork.protocol.trust import TrustedPeers

TRUSTED = TrustedPeers("127.0.0.1,::1,10.0.0.0/8")
PROPERTY = settings(max_examples=400, deadline=None, derandomize=True, database=None)


def request(*fields: tuple[str, str], authority: str | None = "app:8000") -> Headers:
    h = Headers()
    h.append(":method", "GET")
    h.append(":path", "/")
    h.append(":scheme", "http")
    if authority is not None:
        h.append(":authority", authority)
        h.append("host", authority)
    for name, value in fields:
        h.append(name, value)
    return h


def said(*fields: tuple[str, str], family: str = X_FORWARDED, **kw) -> Forwarded | None:
    result, _ = resolve(request(*fields, **kw), TRUSTED, family)
    return result


def client(*fields: tuple[str, str], family: str = X_FORWARDED) -> tuple | None:
    result = said(*fields, family=family)
    return None if result is None or result.client is None else (result.client, result.port)


# -- X-Forwarded-For: the walk from the right ------------------------------------------------------


@pytest.mark.parametrize(
    ("xff", "expected"),
    [
        ("203.0.113.7", ("203.0.113.7", 0)),
        ("6.6.6.6, 203.0.113.7", ("203.0.113.7", 0)),  # the client's own entry: never read
        ("6.6.6.6, 203.0.113.7, 10.0.0.2", ("203.0.113.7", 0)),  # a trusted hop: step over it
        ("10.0.0.3, 10.0.0.2", ("10.0.0.3", 0)),  # all trusted: the left-most
        ("not-an-address, 203.0.113.7", ("203.0.113.7", 0)),  # garbage left of the client
        ("203.0.113.7:4711", ("203.0.113.7", 4711)),
        ("2001:DB8::1", ("2001:db8::1", 0)),  # bare IPv6, in its usual form
        ("[2001:db8::1]:4711", ("2001:db8::1", 4711)),
        ("::ffff:10.0.0.2, 203.0.113.7", ("203.0.113.7", 0)),
        ("203.0.113.9, ::ffff:10.0.0.2", ("203.0.113.9", 0)),  # mapped IPv4: trusted as IPv4
        ("unknown", ("unknown", 0)),
        ("203.0.113.9, _hidden, 10.0.0.2", ("_hidden", 0)),  # an obfuscated hop ends the walk
        (" , 203.0.113.7 ,, ", ("203.0.113.7", 0)),  # empty list elements
    ],
)
def test_x_forwarded_for_walk(xff: str, expected: tuple) -> None:
    assert client(("x-forwarded-for", xff)) == expected


def test_x_forwarded_for_across_repeated_fields() -> None:
    fields = [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.7, 10.0.0.9")]
    assert client(*fields) == ("203.0.113.7", 0)


@pytest.mark.parametrize(
    "xff",
    [
        "203.0.113.7, garbage",  # the entry the nearest proxy wrote is not an address
        "203.0.113.300",
        "1.2.3.4:0",
        "1.2.3.4:65536",
        "1.2.3.4:",
        "[2001:db8::1",
        "fe80::1%eth0",
        "010.0.0.1",  # leading zeros: octal to some parsers
        "203.0.113.7, 10.0.0.2:x",  # a trusted hop, then a bad one
    ],
)
def test_a_bad_x_forwarded_for_is_ignored(xff: str) -> None:
    result, problems = resolve(request(("x-forwarded-for", xff)), TRUSTED, X_FORWARDED)
    assert result is None
    assert len(problems) == 1 and problems[0].startswith("X-Forwarded-For ")


# -- X-Forwarded-Proto, -Host, -Port ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [("https", "https"), ("HTTPS", "https"), ("http", "http"), ("wss", "https"), ("ws", "http")],
)
def test_x_forwarded_proto(proto: str, scheme: str) -> None:
    result = said(("x-forwarded-proto", proto))
    assert result is not None and result.scheme == scheme and result.client is None


@pytest.mark.parametrize("proto", ["ftp", "https, http, ftp", "", "javascript", "http s"])
def test_a_bad_x_forwarded_proto_is_ignored(proto: str) -> None:
    result, problems = resolve(request(("x-forwarded-proto", proto)), TRUSTED, X_FORWARDED)
    assert result is None
    assert problems == [] if not proto else problems[0].startswith("X-Forwarded-Proto ")


def test_proto_host_and_port_come_from_the_clients_hop() -> None:
    # client -> edge (10.0.0.2, TLS) -> inner (peer): each appends what it saw
    fields = [
        ("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2"),
        ("x-forwarded-proto", "http, https, http"),
        ("x-forwarded-host", "evil.example, shop.example, inner.local"),
    ]
    result = said(*fields)
    assert result is not None
    assert (result.client, result.scheme, result.authority) == (
        "203.0.113.7",
        "https",
        "shop.example",
    )
    # a proxy that sets one value instead of appending: that value
    result = said(fields[0], ("x-forwarded-proto", "https"))
    assert result is not None and result.scheme == "https"


@pytest.mark.parametrize(
    ("fields", "authority"),
    [
        ([("x-forwarded-host", "example.com")], "example.com"),
        ([("x-forwarded-host", "example.com:8443")], "example.com:8443"),
        ([("x-forwarded-host", "[2001:db8::1]:8443")], "[2001:db8::1]:8443"),
        ([("x-forwarded-port", "8443")], "app:8443"),  # the received host, the port said
        ([("x-forwarded-host", "a.example:81"), ("x-forwarded-port", "82")], "a.example:82"),
        ([("x-forwarded-host", "a.example"), ("x-forwarded-port", "80")], "a.example"),
        (
            [("x-forwarded-proto", "https"), ("x-forwarded-host", "a.example:443")],
            "a.example",  # the scheme's default port goes (RFC 3986 section 6.2.3)
        ),
    ],
)
def test_x_forwarded_host_and_port(fields: list, authority: str) -> None:
    result = said(*fields)
    assert result is not None and result.authority == authority


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-forwarded-host", "exa mple.com"),
        ("x-forwarded-host", "example.com:0"),
        ("x-forwarded-host", "example.com:99999"),
        ("x-forwarded-host", "example.com:"),
        ("x-forwarded-host", "[not-v6]"),
        ("x-forwarded-host", "user@example.com"),
        ("x-forwarded-host", "a/b"),
        ("x-forwarded-port", "0"),
        ("x-forwarded-port", "65536"),
        ("x-forwarded-port", "80a"),
        ("x-forwarded-port", "-1"),
    ],
)
def test_a_bad_host_or_port_is_ignored_alone(name: str, value: str) -> None:
    fields = [("x-forwarded-for", "203.0.113.7"), (name, value)]
    result, problems = resolve(request(*fields), TRUSTED, X_FORWARDED)
    assert result is not None and result.client == "203.0.113.7" and result.authority is None
    assert len(problems) == 1 and "X-Forwarded-" in problems[0]


def test_a_port_without_any_host_changes_nothing() -> None:
    assert said(("x-forwarded-port", "8443"), authority=None) is None


# -- RFC 7239 Forwarded ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 7239 section 4's examples
        ('for="_gazonk"', ("_gazonk", 0, None, None)),
        ('For="[2001:db8:cafe::17]:4711"', ("2001:db8:cafe::17", 4711, None, None)),
        ("for=192.0.2.60;proto=http;by=203.0.113.43", ("192.0.2.60", 0, "http", None)),
        ("for=192.0.2.43, for=198.51.100.17", ("198.51.100.17", 0, None, None)),
        # a trusted proxy's element is stepped over; proto and host come with the client
        (
            'for=192.0.2.43;proto=https;host="shop.example:8443", for=10.0.0.2;proto=http',
            ("192.0.2.43", 0, "https", "shop.example:8443"),
        ),
        ("for=unknown;proto=wss", ("unknown", 0, "https", None)),
        ('for="192.0.2.43:_port"', ("192.0.2.43", 0, None, None)),
        ("proto=https", (None, 0, "https", None)),  # no client named: the peer stands
        ("for=10.0.0.3;proto=https, proto=http", (None, 0, "http", None)),  # the peer's word
        ("for=10.0.0.3, for=10.0.0.2", ("10.0.0.3", 0, None, None)),  # all trusted
        ('for="\\1\\9\\2.0.2.1"', ("192.0.2.1", 0, None, None)),  # quoted-pairs
        ("for=192.0.2.1 ; proto=https;;", ("192.0.2.1", 0, "https", None)),
        ('for="x, for=192.0.2.1', ("192.0.2.1", 0, None, None)),  # the client's junk: unread
        ("garbage!!, for=192.0.2.1", ("192.0.2.1", 0, None, None)),
        ('for=192.0.2.9;ext="a,b", for=192.0.2.1', ("192.0.2.1", 0, None, None)),
        ('for=192.0.2.9, for=10.0.0.5;x="a,\\"b,", for=10.0.0.2', ("192.0.2.9", 0, None, None)),
    ],
)
def test_forwarded(value: str, expected: tuple) -> None:
    result = said(("forwarded", value), family=FORWARDED)
    assert result is not None
    assert (result.client, result.port, result.scheme, result.authority) == expected


def test_forwarded_across_repeated_fields() -> None:
    fields = [("forwarded", "for=6.6.6.6"), ("forwarded", "for=192.0.2.1, for=10.0.0.7")]
    assert client(*fields, family=FORWARDED) == ("192.0.2.1", 0)


@pytest.mark.parametrize(
    "value",
    [
        "for=2001:db8::1",  # IPv6 needs brackets, and then quotes
        "for=[2001:db8::1]",  # brackets need quotes (not a token)
        "for=192.0.2.1:80",  # a port needs quotes
        "for=192.0.2.1;for=192.0.2.2",  # a parameter twice in one element
        "for=192.0.2.1;proto=ftp",
        'for=192.0.2.1;host="a b"',
        "for=192.0.2.1 proto=https",
        "for",
        "=x",
        'for="192.0.2.1',
        "for=192.0.2.1;proto",
        'for="[2001:db8::1%eth0]"',
        "for=192.0.2.1;proto=gopher, for=10.0.0.2",  # bad in the element the walk stops at
        "for=not-an-address",
    ],
)
def test_a_bad_forwarded_is_ignored(value: str) -> None:
    result, problems = resolve(request(("forwarded", value)), TRUSTED, FORWARDED)
    assert result is None
    assert len(problems) == 1 and problems[0].startswith("Forwarded "), problems


def test_each_family_reads_only_its_own_fields() -> None:
    both = [("forwarded", "for=192.0.2.1;proto=https"), ("x-forwarded-for", "203.0.113.7")]
    assert client(*both) == ("203.0.113.7", 0)
    assert client(*both, family=FORWARDED) == ("192.0.2.1", 0)
    assert said(("forwarded", "for=192.0.2.1")) is None
    assert said(("x-forwarded-for", "203.0.113.7"), family=FORWARDED) is None


def test_nothing_to_say() -> None:
    assert resolve(request(("x-other", "1")), TRUSTED, X_FORWARDED) == (None, [])
    assert resolve(request(("forwarded", " , ")), TRUSTED, FORWARDED) == (None, [])


# -- applying it -----------------------------------------------------------------------------------


def test_apply_rewrites_scheme_authority_and_host_and_keeps_what_was_received() -> None:
    h = request(
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "shop.example"),
    )
    result, _ = resolve(h, TRUSTED, X_FORWARDED)
    assert result is not None
    applied = apply(h, result)
    assert (applied.received_scheme, applied.received_authority) == ("http", "app:8000")
    assert h.items()[:5] == [
        (":method", "GET"),
        (":path", "/"),
        (":scheme", "https"),
        (":authority", "shop.example"),
        ("host", "shop.example"),
    ]
    assert h.get("x-forwarded-for") == "203.0.113.7"  # the fields themselves stay


def test_apply_adds_a_missing_authority_among_the_pseudo_headers() -> None:
    h = request(("x-forwarded-host", "shop.example"), ("accept", "*/*"), authority=None)
    result, _ = resolve(h, TRUSTED, X_FORWARDED)
    assert result is not None
    applied = apply(h, result)
    assert applied.received_authority is None
    names = [n for n, _ in h.items()]
    assert names == [":method", ":path", ":scheme", ":authority", "x-forwarded-host", "accept"]
    assert h.get(":authority") == "shop.example" and not h.has("host")


# -- properties ------------------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
UNTRUSTED_V4 = st.ip_addresses(v=4).filter(lambda a: str(a) not in TRUSTED).map(str)


@PROPERTY
@given(prefix=ANY_TEXT, address=UNTRUSTED_V4, hops=st.integers(0, 3))
def test_no_client_chooses_its_address_through_x_forwarded_for(prefix, address, hops) -> None:
    """Whatever a client sends as X-Forwarded-For, the trusted proxies' entries decide."""
    value = ", ".join([prefix, address] + ["10.0.0.1"] * hops)
    assert client(("x-forwarded-for", value)) == (address, 0)


@PROPERTY
@given(prefix=ANY_TEXT, address=UNTRUSTED_V4, proto=ANY_TEXT, host=ANY_TEXT)
def test_no_client_chooses_its_address_through_forwarded(prefix, address, proto, host) -> None:
    """The client's own Forwarded text, however broken, cannot hide the elements appended
    after it; its own proto and host are never taken."""
    fields = [("forwarded", f"{prefix};proto={proto};host={host}"), ("forwarded", f"for={address}")]
    result, _ = resolve(request(*fields), TRUSTED, FORWARDED)
    assert result is not None and (result.client, result.scheme, result.authority) == (
        address,
        None,
        None,
    )
    joined = [("forwarded", f"{prefix}, for={address};proto=https")]
    result, _ = resolve(request(*joined), TRUSTED, FORWARDED)
    assert result is not None and (result.client, result.scheme) == (address, "https")


@PROPERTY
@given(
    fields=st.lists(
        st.tuples(st.sampled_from([*sorted(forwarded.NAMES[X_FORWARDED]), "forwarded"]), ANY_TEXT),
        max_size=5,
    )
)
def test_any_input_resolves_or_is_ignored(fields) -> None:
    """Nothing a trusted peer sends raises: the answer is a record or None plus reasons, and
    what is taken is valid."""
    for family in (X_FORWARDED, FORWARDED):
        h = request(*fields)
        result, problems = resolve(h, TRUSTED, family)
        assert all(isinstance(p, str) for p in problems)
        if result is not None:
            apply(h, result)
            assert h.get(":scheme") in ("http", "https")
            assert result.port in range(65536)
            if result.client is not None and result.version:
                assert ipaddress.ip_address(result.client).version == result.version
            elif result.client is not None:
                assert result.client == "unknown" or result.client.startswith("_")


TOKENS = st.text("abcXYZ019-._~!#$%&'*+^`|", min_size=1, max_size=8)
QUOTED = st.text(  # what a quoted-string can carry (RFC 9110 section 5.6.4): no DEL
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=10,
)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@PROPERTY
@given(
    elements=st.lists(
        st.dictionaries(TOKENS.map(str.lower), st.one_of(TOKENS, QUOTED), min_size=1, max_size=3),
        min_size=1,
        max_size=4,
    )
)
def test_elements_read_from_the_right_are_those_written(elements) -> None:
    def encode(value: str) -> str:
        return value if _is_token(value) else _quote(value)

    text = ", ".join(";".join(f"{k}={encode(v)}" for k, v in e.items()) for e in elements)
    got = [(parse_element(element), leftmost) for element, leftmost in elements_from_right(text)]
    expected = [(e, i == 0) for i, e in enumerate(elements)][::-1]
    assert got == expected


def _is_token(value: str) -> bool:
    return bool(value) and all(
        c.isascii() and (c.isalnum() or c in "-._~!#$%&'*+^`|") for c in value
    )


def test_node_grammar() -> None:
    assert parse_node("192.0.2.1", bracketed_only=True) == ("192.0.2.1", 0, 4)
    assert parse_node("[::1]:80", bracketed_only=True) == ("::1", 80, 6)
    assert parse_node("_a.b-c_", bracketed_only=True) == ("_a.b-c_", 0, 0)
    assert parse_node("UNKNOWN", bracketed_only=True) == ("unknown", 0, 0)  # RFC 5234 2.3
    for bad in ("_", "unknown:", "[::1]80", "[1.2.3.4]", "::1", "192.0.2.1:_", "unknowns"):
        with pytest.raises(ValueError):
            parse_node(bad, bracketed_only=True)
