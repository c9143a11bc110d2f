"""The PROXY protocol parser, sans-I/O (prefork/protocol/proxy.py): versions 1 and 2 against
HAProxy's specification, a corpus of malformed headers (each must fail), and properties:
round trips, any split of the bytes, arbitrary input, single-byte corruption under a CRC32C."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefork.protocol import proxy
from prefork.protocol.crc32c import crc32c
from prefork.protocol.proxy import ProxyHeaderError, parse
from tests.proxy_headers import SIGNATURE, local_v2, ssl_value, tlv, v1, v2

FULL6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"


def parsed(data: bytes) -> proxy.ProxyHeader:
    found = parse(data)
    assert found is not None, "a whole header must parse"
    header, length = found
    assert length == len(data)
    return header


# -- CRC-32C --------------------------------------------------------------------------------


def test_crc32c_check_values() -> None:
    # RFC 3720 appendix B.4 and the usual check value of CRC-32C
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"\x00" * 32) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"") == 0


# -- version 1 ----------------------------------------------------------------------------


def test_v1_tcp4_and_what_follows() -> None:
    data = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n"
    header, length = parse(data)  # type: ignore[misc]
    assert data[length:] == b"GET / HTTP/1.1\r\n"
    assert (header.version, header.command, header.family, header.transport) == (
        1,
        "PROXY",
        "INET",
        "STREAM",
    )
    assert header.source == ("192.168.0.1", 56324)
    assert header.destination == ("192.168.0.11", 443)


def test_v1_tcp6_is_normalized() -> None:
    header = parsed(b"PROXY TCP6 2001:DB8:0:0::1 ::FFFF:10.0.0.1 0 65535\r\n")
    assert header.family == "INET6"
    assert header.source == ("2001:db8::1", 0)
    assert header.destination == ("::ffff:a00:1", 65535)


def test_v1_longest_lines_are_accepted() -> None:
    tcp6 = f"PROXY TCP6 {FULL6} {FULL6} 65535 65535\r\n".encode()
    assert len(tcp6) == 104
    assert parsed(tcp6).source == (FULL6, 65535)
    worst = f"PROXY UNKNOWN {FULL6} {FULL6} 65535 65535\r\n".encode()
    assert len(worst) == proxy.V1_MAX == 107
    assert parsed(worst).source is None


@pytest.mark.parametrize(
    "line", [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN 1.2.3.4 garbage is ignored\r\n"]
)
def test_v1_unknown_keeps_no_address(line: bytes) -> None:
    header = parsed(line)
    assert (header.command, header.family, header.source, header.destination) == (
        "PROXY",
        None,
        None,
        None,
    )


def test_v1_needs_the_crlf() -> None:
    line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
    for end in range(len(line)):
        assert parse(line[:end]) is None, line[:end]


# -- version 2 ----------------------------------------------------------------------------


def test_v2_inet_with_every_known_tlv() -> None:
    subs = [
        (proxy.SSL_VERSION, b"TLSv1.3"),
        (proxy.SSL_CN, "é.example".encode()),
        (proxy.SSL_CIPHER, b"TLS_AES_128_GCM_SHA256"),
        (proxy.SSL_SIG_ALG, b"RSA-SHA256"),
        (proxy.SSL_KEY_ALG, b"RSA2048"),
        (0x2F, b"unknown sub-type"),
    ]
    tlvs = [
        (proxy.ALPN, b"h2"),
        (proxy.AUTHORITY, b"www.example.com"),
        (proxy.NOOP, b"\x00\x00\x00"),
        (proxy.UNIQUE_ID, b"u" * 128),
        (proxy.SSL, ssl_value(proxy.CLIENT_SSL | proxy.CLIENT_CERT_CONN, 0, subs)),
        (proxy.NETNS, b"blue"),
        (0xE0, b"custom"),
    ]
    data = v2(("203.0.113.9", 51000), ("198.51.100.2", 443), tlvs=tlvs, crc=True)
    header = parsed(data)
    assert header.source == ("203.0.113.9", 51000)
    assert header.destination == ("198.51.100.2", 443)
    assert (header.alpn, header.authority, header.unique_id, header.netns) == (
        b"h2",
        "www.example.com",
        b"u" * 128,
        "blue",
    )
    assert [kind for kind, _ in header.tlvs] == [k for k, _ in tlvs] + [proxy.CRC32C]
    ssl = header.ssl
    assert ssl is not None
    assert ssl.ssl and ssl.cert_conn and not ssl.cert_sess and ssl.verified
    assert (ssl.version, ssl.cn, ssl.cipher, ssl.sig_alg, ssl.key_alg) == (
        "TLSv1.3",
        "é.example",
        "TLS_AES_128_GCM_SHA256",
        "RSA-SHA256",
        "RSA2048",
    )
    assert (0x2F, b"unknown sub-type") in ssl.tlvs


def test_v2_inet6_udp_and_unix() -> None:
    header = parsed(v2(("2001:db8::7", 1), ("2001:db8::1", 2), transport=2))
    assert (header.family, header.transport, header.source) == (
        "INET6",
        "DGRAM",
        ("2001:db8::7", 1),
    )
    unix = parsed(v2("/run/client.sock", "/run/app.sock"))
    assert (unix.family, unix.source, unix.destination) == (
        "UNIX",
        "/run/client.sock",
        "/run/app.sock",
    )
    abstract = parsed(v2("\0hidden", "/run/app.sock"))
    assert abstract.source == "\0hidden"


def test_v2_local_skips_its_block() -> None:
    header = parsed(local_v2())
    assert header.command == "LOCAL" and header.source is None
    # spec 2.2: the receiver skips the announced length whatever the family says, and
    # discards the block (an address, even one of an unknown family, a TLV with a bad CRC)
    body = b"\x7f" * 12 + tlv(proxy.CRC32C, b"\xde\xad\xbe\xef")
    odd = SIGNATURE + b"\x20\xff" + len(body).to_bytes(2, "big") + body
    assert parsed(odd).command == "LOCAL"


def test_v2_unspec_keeps_the_tlvs_but_no_address() -> None:
    header = parsed(v2(tlvs=[(proxy.AUTHORITY, b"example.org")], crc=True))
    assert (header.command, header.family, header.source) == ("PROXY", None, None)
    assert header.authority == "example.org"


@pytest.mark.parametrize("fam", [0x10, 0x20, 0x30])
def test_v2_family_without_transport_falls_back_to_unspec(fam: int) -> None:
    # spec 2.2: a valid combination the receiver does not implement falls back to UNSPEC
    body = b"\x01" * 40
    header = parsed(SIGNATURE + bytes([0x21, fam]) + len(body).to_bytes(2, "big") + body)
    assert (header.family, header.source, header.tlvs) == (None, None, ())


def test_v2_largest_header_and_what_follows() -> None:
    big = v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=[(proxy.NOOP, b"\0" * (65535 - 12 - 3))])
    assert len(big) == 16 + 65535
    header, length = parse(big + b"PRI")  # type: ignore[misc]
    assert length == len(big) and header.source == ("10.0.0.1", 1)


def test_v2_needs_the_whole_header() -> None:
    data = v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=[(proxy.ALPN, b"h2")], crc=True)
    for end in range(len(data)):
        assert parse(data[:end]) is None, end


# -- malformed ------------------------------------------------------------------------------

V4 = v2(("10.0.0.1", 1), ("10.0.0.2", 2))


def _v2_raw(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return SIGNATURE + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body


def _tlvs(*items: bytes) -> bytes:
    """A TCP4 header with these raw TLV bytes after its addresses."""
    return _v2_raw(0x21, 0x11, V4[16:28] + b"".join(items))


MALFORMED = {
    # not a PROXY header at all
    "http": b"GET / HTTP/1.1\r\n",
    "tls": b"\x16\x03\x01\x02\x00\x01",
    "lower-case": b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "no-space": b"PROXY\r\n",
    "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "bad-signature": SIGNATURE[:11] + b"\x0b" + V4[12:],
    # version 1 (spec 2.1)
    "v1-bare-lf": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    "v1-bare-cr": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rGET",
    "v1-lf-in-unknown": b"PROXY UNKNOWN\nGET / HTTP/1.1\r\n",
    "v1-two-spaces": b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
    "v1-trailing-space": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
    "v1-tab": b"PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",
    "v1-empty-protocol": b"PROXY \r\n",
    "v1-protocol": b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    "v1-unknown-glued": b"PROXY UNKNOWNx\r\n",
    "v1-missing-field": b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "v1-extra-field": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    "v1-heading-zero": b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
    "v1-octet-256": b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
    "v1-three-octets": b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
    "v1-host-name": b"PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
    "v1-port-heading-zero": b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    "v1-port-65536": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
    "v1-port-sign": b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
    "v1-port-empty": b"PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n",
    "v1-tcp4-with-ipv6": b"PROXY TCP4 ::1 ::1 1 2\r\n",
    "v1-tcp6-with-ipv4": b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
    "v1-tcp6-zone": b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
    "v1-tcp6-brackets": b"PROXY TCP6 [::1] ::1 1 2\r\n",
    "v1-tcp6-two-gaps": b"PROXY TCP6 1::2::3 ::1 1 2\r\n",
    "v1-nul": b"PROXY TCP4 1.2.3.4\x00 5.6.7.8 1 2\r\n",
    "v1-not-ascii": "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 é\r\n".encode(),
    "v1-oversized": b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n",  # 108 bytes
    "v1-no-crlf": b"PROXY UNKNOWN " + b"x" * 200,
    # version 2 (spec 2.2)
    "v2-version-1": _v2_raw(0x11, 0x11, V4[16:]),
    "v2-version-3": _v2_raw(0x31, 0x11, V4[16:]),
    "v2-command-2": _v2_raw(0x22, 0x11, V4[16:]),
    "v2-family-4": _v2_raw(0x21, 0x41, V4[16:]),
    "v2-transport-3": _v2_raw(0x21, 0x13, V4[16:]),
    "v2-inet-short": _v2_raw(0x21, 0x11, V4[16:27]),
    "v2-inet6-short": _v2_raw(0x21, 0x21, b"\0" * 35),
    "v2-unix-short": _v2_raw(0x21, 0x31, b"\0" * 215),
    "v2-tlv-one-byte": _tlvs(b"\x04"),
    "v2-tlv-two-bytes": _tlvs(b"\x04\x00"),
    "v2-tlv-past-end": _tlvs(b"\x04\x00\x05abcd"),
    "v2-crc-mismatch": _tlvs(tlv(proxy.CRC32C, b"\0\0\0\1")),
    "v2-crc-short": _tlvs(tlv(proxy.CRC32C, b"\0\0\0")),
    "v2-alpn-twice": _tlvs(tlv(proxy.ALPN, b"h2"), tlv(proxy.ALPN, b"http/1.1")),
    "v2-authority-twice": _tlvs(tlv(proxy.AUTHORITY, b"a"), tlv(proxy.AUTHORITY, b"b")),
    "v2-authority-not-utf8": _tlvs(tlv(proxy.AUTHORITY, b"\xff.example")),
    "v2-unique-id-129": _tlvs(tlv(proxy.UNIQUE_ID, b"u" * 129)),
    "v2-netns-not-ascii": _tlvs(tlv(proxy.NETNS, "é".encode())),
    "v2-ssl-short": _tlvs(tlv(proxy.SSL, b"\x01\0\0\0")),
    "v2-ssl-sub-truncated": _tlvs(tlv(proxy.SSL, ssl_value() + b"\x21\x00")),
    "v2-ssl-sub-past-end": _tlvs(tlv(proxy.SSL, ssl_value() + b"\x21\x00\x09TLS")),
    "v2-ssl-version-not-ascii": _tlvs(
        tlv(proxy.SSL, ssl_value(subs=[(proxy.SSL_VERSION, b"\xff")]))
    ),
    "v2-ssl-cn-not-utf8": _tlvs(tlv(proxy.SSL, ssl_value(subs=[(proxy.SSL_CN, b"\xc3")]))),
    "v2-ssl-cn-twice": _tlvs(
        tlv(proxy.SSL, ssl_value(subs=[(proxy.SSL_CN, b"a"), (proxy.SSL_CN, b"b")]))
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_headers_are_refused(name: str) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(MALFORMED[name])


@pytest.mark.parametrize(
    "start",
    [b"G", b"PROXY TCP4 1.2.3.4\n", b"PROXY TCP4 \xff", b"\r\n\r\n\x00\r\nQUIT\n\x11"],
)
def test_garbage_is_refused_as_it_arrives(start: bytes) -> None:
    # spec 2.1: abort as soon as possible; a prefix that cannot become a header fails now
    with pytest.raises(ProxyHeaderError):
        parse(start)


# -- properties ---------------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)
custom_tlvs = st.lists(
    st.tuples(st.sampled_from([proxy.NOOP, 0xE0, 0xEF, 0xF0, 0x7F]), st.binary(max_size=40)),
    max_size=5,
)


@given(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)), ports, ports)
def test_v1_round_trip(addresses: tuple[str, str], sport: int, dport: int) -> None:
    source, destination = addresses
    protocol = "TCP6" if ":" in source else "TCP4"
    header = parsed(v1((source, sport), (destination, dport), protocol))
    assert header.source == (str(ipaddress.ip_address(source)), sport)
    assert header.destination == (str(ipaddress.ip_address(destination)), dport)


@given(
    st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)),
    ports,
    ports,
    custom_tlvs,
    st.booleans(),
    st.binary(max_size=20),
)
def test_v2_round_trip(
    addresses: tuple[str, str],
    sport: int,
    dport: int,
    tlvs: list[tuple[int, bytes]],
    crc: bool,
    after: bytes,
) -> None:
    source, destination = addresses
    data = v2((source, sport), (destination, dport), tlvs=tlvs, crc=crc)
    header, length = parse(data + after)  # type: ignore[misc]
    assert length == len(data)
    assert header.source == (source, sport) and header.destination == (destination, dport)
    assert list(header.tlvs[: len(tlvs)]) == tlvs


@given(st.data())
def test_any_split_gives_the_same_header(data: st.DataObject) -> None:
    whole = data.draw(
        st.sampled_from(
            [
                v1(("203.0.113.1", 1), ("203.0.113.2", 2)),
                v2(("2001:db8::1", 1), ("2001:db8::2", 2), tlvs=[(proxy.ALPN, b"h2")], crc=True),
                b"PROXY UNKNOWN\r\n",
                local_v2(),
            ]
        )
    )
    cut = data.draw(st.integers(0, len(whole) - 1))
    assert parse(whole[:cut]) is None  # need more, never a wrong answer
    assert parse(whole) == parse(whole[:cut] + whole[cut:])


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=200).map(lambda b: SIGNATURE + b)))
def test_arbitrary_bytes_never_break_the_parser(data: bytes) -> None:
    try:
        found = parse(data)
    except ProxyHeaderError:
        return
    if found is not None:
        assert 0 < found[1] <= len(data)


@given(st.data())
def test_corruption_under_a_crc_never_names_another_client(data: st.DataObject) -> None:
    good = v2(("198.51.100.7", 7000), ("198.51.100.8", 443), tlvs=[(proxy.ALPN, b"h2")], crc=True)
    at = data.draw(st.integers(12, len(good) - 1))  # after the signature
    flip = data.draw(st.integers(1, 255))
    bad = good[:at] + bytes([good[at] ^ flip]) + good[at + 1 :]
    try:
        found = parse(bad)
    except ProxyHeaderError:
        return
    # What can survive: a longer length (need more), a LOCAL command (its block is discarded,
    # spec 2.2), a family without transport (UNSPEC: no address), or the CRC TLV's own type
    # (then no longer a CRC): none of them names a client other than the true one.
    if found is not None and found[0].source is not None:
        assert (found[0].source, found[0].destination) == (
            ("198.51.100.7", 7000),
            ("198.51.100.8", 443),
        )
