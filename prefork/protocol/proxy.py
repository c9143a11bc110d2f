"""The PROXY protocol, versions 1 and 2, sans-I/O: what a balancer says about the connection.

HAProxy's specification ("The PROXY protocol, Versions 1 & 2", 2020/03/05; cited below as
"spec" with its section numbers) has a proxy that relays a TCP connection put one header
before the first byte of the client's: the client's address and port and the address it
connected to, and in version 2 optional type-length-value fields (TLVs) such as the ALPN and
SNI of a TLS connection the proxy terminated. A listener configured for the protocol reads it
first, before TLS and before HTTP; one that is not never looks for it (spec section 5: never
guess).

:func:`parse` is the whole parser: given the bytes received so far it returns None (need
more), or the :class:`ProxyHeader` and its length (the bytes after it are the client's), or
raises :class:`ProxyHeaderError` for anything that does not exactly match the specification
(spec 2.1: "discarded and cause the receiver to abort the connection"). Version 1 is one
US-ASCII line of at most 107 bytes ending in CRLF; version 2 starts with a 12-byte signature
and carries its own length. The two are told apart by their first bytes (spec 2.2), and a
bad first byte fails at once.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass

from prefork.protocol.crc32c import crc32c

__all__ = [
    "V1_MAX",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "SSLInfo",
    "parse",
]

V1_MAX = 107  # spec 2.1: the longest line, CRLF included
V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version and command, family and transport, length

# TLV types (spec 2.2) and the PP2_TYPE_SSL sub-types (spec 2.2.6)
ALPN, AUTHORITY, CRC32C, NOOP, UNIQUE_ID, SSL, NETNS = 0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x30
SSL_VERSION, SSL_CN, SSL_CIPHER, SSL_SIG_ALG, SSL_KEY_ALG = 0x21, 0x22, 0x23, 0x24, 0x25
CLIENT_SSL, CLIENT_CERT_CONN, CLIENT_CERT_SESS = 0x01, 0x02, 0x04
UNIQUE_ID_MAX = 128  # spec 2.2.5

_FAMILIES = {1: "INET", 2: "INET6", 3: "UNIX"}
_TRANSPORTS = {1: "STREAM", 2: "DGRAM"}
_ADDRESS_SIZES = {"INET": 12, "INET6": 36, "UNIX": 216}  # spec 2.2, union proxy_addr
_SSL_STRINGS = {
    SSL_VERSION: ("version", "ascii"),
    SSL_CN: ("cn", "utf-8"),
    SSL_CIPHER: ("cipher", "ascii"),
    SSL_SIG_ALG: ("sig_alg", "ascii"),
    SSL_KEY_ALG: ("key_alg", "ascii"),
}
_SINGLE = frozenset({ALPN, AUTHORITY, CRC32C, UNIQUE_ID, SSL, NETNS})

# spec 2.1: dotted quads and ports without heading zeroes; IPv6 in hex groups and colons
_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
)
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_PORT = re.compile(r"0|[1-9]\d{0,4}")
_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")

Address = tuple[str, int] | str  # (address, port), or a Unix socket's path
TLVs = tuple[tuple[int, bytes], ...]


class ProxyHeaderError(ValueError):
    """Not a valid PROXY protocol header: the connection must be closed without a word."""


@dataclass(frozen=True, slots=True)
class SSLInfo:
    """``PP2_TYPE_SSL`` (spec 2.2.6): what the proxy knows of the client's TLS connection.

    Attributes:
        client: the ``PP2_CLIENT_*`` bits (``CLIENT_SSL``, ``CLIENT_CERT_CONN``,
            ``CLIENT_CERT_SESS``); see also the properties.
        verify: 0 when the client presented a certificate and it was verified.
        version, cn, cipher, sig_alg, key_alg: the sub-TLVs' strings, None when absent.
        tlvs: every sub-TLV as received, ``(type, value)``.
    """

    client: int
    verify: int
    version: str | None = None
    cn: str | None = None
    cipher: str | None = None
    sig_alg: str | None = None
    key_alg: str | None = None
    tlvs: TLVs = ()

    @property
    def ssl(self) -> bool:
        """The client connected over TLS."""
        return bool(self.client & CLIENT_SSL)

    @property
    def cert_conn(self) -> bool:
        """The client presented a certificate on this connection."""
        return bool(self.client & CLIENT_CERT_CONN)

    @property
    def cert_sess(self) -> bool:
        """The client presented a certificate at least once in this TLS session."""
        return bool(self.client & CLIENT_CERT_SESS)

    @property
    def verified(self) -> bool:
        """The client's certificate was verified by the proxy."""
        return self.verify == 0


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """One PROXY protocol header.

    Attributes:
        version: 1 (text) or 2 (binary).
        command: ``"PROXY"`` (relayed: the addresses are the client's) or ``"LOCAL"`` (spec
            2.2: the proxy's own connection, a health check; the socket's addresses stand).
        family: ``"INET"``, ``"INET6"`` or ``"UNIX"``; None when the proxy did not say
            (version 1 ``UNKNOWN``, version 2 ``AF_UNSPEC``, and every ``LOCAL``).
        transport: ``"STREAM"`` or ``"DGRAM"``; None likewise.
        source: the client's ``(address, port)``, or a Unix socket's path; None likewise.
        destination: the address the client connected to, in the same form.
        tlvs: every version 2 TLV as received, ``(type, value)``, in order.
        alpn: ``PP2_TYPE_ALPN``, the protocol the client negotiated with the proxy.
        authority: ``PP2_TYPE_AUTHORITY``, the host name the client asked for (TLS SNI).
        ssl: ``PP2_TYPE_SSL``, as :class:`SSLInfo`.
        unique_id: ``PP2_TYPE_UNIQUE_ID``, the proxy's identifier of the connection.
        netns: ``PP2_TYPE_NETNS``, the network namespace the proxy accepted it in.
    """

    version: int
    command: str
    family: str | None = None
    transport: str | None = None
    source: Address | None = None
    destination: Address | None = None
    tlvs: TLVs = ()
    alpn: bytes | None = None
    authority: str | None = None
    ssl: SSLInfo | None = None
    unique_id: bytes | None = None
    netns: str | None = None


def parse(data: bytes | bytearray) -> tuple[ProxyHeader, int] | None:
    """Parse the PROXY header at the start of ``data``, the bytes received so far. An
    incomplete version 2 header costs a few comparisons however long it is, so a caller may
    try again as each piece arrives.

    Returns:
        None when ``data`` is a valid beginning but not yet a whole header; else the header
        and its length in bytes (what follows belongs to the client).

    Raises:
        ProxyHeaderError: ``data`` does not start with a valid header (or a beginning of one).
    """
    if data[:12] == V2_SIGNATURE:
        return _v2(data)
    if data[:6] == V1_PREFIX:
        return _v1(data)
    if V2_SIGNATURE.startswith(data) or V1_PREFIX.startswith(data):
        return None  # spec 2.2: too few bytes yet to tell (at most 11)
    raise ProxyHeaderError("no PROXY protocol header")


# -- version 1 -------------------------------------------------------------------------------


def _v1(data: bytes | bytearray) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    line = data[:V1_MAX] if end < 0 else data[:end]
    # spec 2.1: one line of US-ASCII; a lone CR or LF does not end it. Checked as the bytes
    # arrive, so that garbage is refused at once, not when 107 bytes have come.
    if _NOT_PRINTABLE.search(line[:-1] if end < 0 and line.endswith(b"\r") else line):
        raise ProxyHeaderError("version 1: a byte that is not printable US-ASCII before CRLF")
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"version 1: no CRLF in the first {V1_MAX} bytes")
        return None
    return _v1_line(bytes(line[6:]).decode("ascii")), end + 2


def _v1_line(text: str) -> ProxyHeader:
    protocol, _, rest = text.partition(" ")
    if protocol == "UNKNOWN":
        # spec 2.1: the rest of the line is to be ignored; the socket's addresses stand
        return ProxyHeader(1, "PROXY")
    if protocol not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"version 1: unknown protocol {protocol[:8]!r}")
    fields = rest.split(" ")
    if len(fields) != 4:
        raise ProxyHeaderError("version 1: expected 4 fields after the protocol, one space apart")
    src, dst, sport, dport = fields
    if protocol == "TCP4":
        family, source, destination = "INET", _v1_ipv4(src), _v1_ipv4(dst)
    else:
        family, source, destination = "INET6", _v1_ipv6(src), _v1_ipv6(dst)
    ports = _v1_port(sport), _v1_port(dport)
    return ProxyHeader(1, "PROXY", family, "STREAM", (source, ports[0]), (destination, ports[1]))


def _v1_ipv4(text: str) -> str:
    if _IPV4.fullmatch(text) is None:
        raise ProxyHeaderError(f"version 1: {text[:16]!r} is not a TCP4 address")
    return text


def _v1_ipv6(text: str) -> str:
    if _IPV6.fullmatch(text) is None:  # no zone index, no brackets
        raise ProxyHeaderError(f"version 1: {text[:48]!r} is not a TCP6 address")
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise ProxyHeaderError(f"version 1: {text[:48]!r} is not a TCP6 address") from None


def _v1_port(text: str) -> int:
    if _PORT.fullmatch(text) is None or int(text) > 65535:
        raise ProxyHeaderError(f"version 1: {text[:8]!r} is not a port")
    return int(text)


# -- version 2 -------------------------------------------------------------------------------


def _v2(data: bytes | bytearray) -> tuple[ProxyHeader, int] | None:
    if len(data) == 12:
        return None
    version, command = data[12] >> 4, data[12] & 0x0F  # checked as soon as they arrive
    if version != 2:
        raise ProxyHeaderError(f"version 2 signature with version {version}")
    if command > 1:
        raise ProxyHeaderError(f"version 2: unknown command {command}")
    if len(data) < V2_FIXED:
        return None
    end = V2_FIXED + int.from_bytes(data[14:16], "big")
    if len(data) < end:
        return None
    header = bytes(data[:end])
    if command == 0:
        # spec 2.2: LOCAL, the proxy's own connection; the block is skipped, family and all
        return ProxyHeader(2, "LOCAL"), end
    return _v2_proxy(header), end


def _v2_proxy(header: bytes) -> ProxyHeader:
    family_code, transport_code = header[13] >> 4, header[13] & 0x0F
    if family_code > 3 or transport_code > 2:
        raise ProxyHeaderError(f"version 2: unknown family and transport 0x{header[13]:02x}")
    family, transport = _FAMILIES.get(family_code), _TRANSPORTS.get(transport_code)
    if family is None:  # AF_UNSPEC: no addresses; TLVs may follow (HAProxy sends them so)
        return _with_tlvs(ProxyHeader(2, "PROXY"), header, V2_FIXED)
    if transport is None:
        # spec 2.2: a valid combination this receiver does not know: fall back to UNSPEC,
        # the socket's addresses; where the addresses end is not known, so neither are TLVs
        return ProxyHeader(2, "PROXY")
    size = _ADDRESS_SIZES[family]
    if len(header) < V2_FIXED + size:
        raise ProxyHeaderError(f"version 2: {family} addresses need {size} bytes")
    block = header[V2_FIXED : V2_FIXED + size]
    if family == "UNIX":
        source: Address = _unix_path(block[:108])
        destination: Address = _unix_path(block[108:])
    else:
        half = (size - 4) // 2
        make = ipaddress.IPv4Address if family == "INET" else ipaddress.IPv6Address
        ports = int.from_bytes(block[-4:-2], "big"), int.from_bytes(block[-2:], "big")
        source = (str(make(block[:half])), ports[0])
        destination = (str(make(block[half : 2 * half])), ports[1])
    found = ProxyHeader(2, "PROXY", family, transport, source, destination)
    return _with_tlvs(found, header, V2_FIXED + size)


def _unix_path(raw: bytes) -> str:
    """A ``sun_path`` of 108 bytes: up to its first NUL; an abstract name (a leading NUL)
    keeps that NUL, as Python's ``getpeername()`` does."""
    if raw[:1] == b"\x00":
        return "\x00" + raw[1:].rstrip(b"\x00").decode("utf-8", "surrogateescape")
    return raw.partition(b"\x00")[0].decode("utf-8", "surrogateescape")


def _tlvs(data: bytes, start: int, what: str) -> list[tuple[int, bytes, int]]:
    """``(type, value, offset of value)`` for each TLV in ``data[start:]``, which they fill."""
    out = []
    at, end = start, len(data)
    while at < end:
        if at + 3 > end:
            raise ProxyHeaderError(f"version 2: a truncated {what} header")
        kind, size = data[at], int.from_bytes(data[at + 1 : at + 3], "big")
        if at + 3 + size > end:
            raise ProxyHeaderError(f"version 2: {what} 0x{kind:02x} runs past the header")
        out.append((kind, data[at + 3 : at + 3 + size], at + 3))
        at += 3 + size
    return out


def _with_tlvs(found: ProxyHeader, header: bytes, start: int) -> ProxyHeader:
    """``found`` with the TLVs of ``header[start:]``: checked, and the known ones decoded."""
    tlvs = _tlvs(header, start, "TLV")
    if not tlvs:
        return found
    seen: set[int] = set()
    known: dict[str, object] = {}
    for kind, value, offset in tlvs:
        if kind in _SINGLE:
            if kind in seen:
                raise ProxyHeaderError(f"version 2: TLV 0x{kind:02x} twice")
            seen.add(kind)
        if kind == CRC32C:
            _check_crc(header, value, offset)
        elif kind == ALPN:
            known["alpn"] = value
        elif kind == AUTHORITY:
            known["authority"] = _text(value, "utf-8", "PP2_TYPE_AUTHORITY")
        elif kind == UNIQUE_ID:
            if len(value) > UNIQUE_ID_MAX:
                raise ProxyHeaderError(f"version 2: UNIQUE_ID over {UNIQUE_ID_MAX} bytes")
            known["unique_id"] = value
        elif kind == SSL:
            known["ssl"] = _ssl(value)
        elif kind == NETNS:
            known["netns"] = _text(value, "ascii", "PP2_TYPE_NETNS")
    every = tuple((kind, value) for kind, value, _ in tlvs)
    return dataclasses.replace(found, tlvs=every, **known)  # type: ignore[arg-type]


def _check_crc(header: bytes, value: bytes, offset: int) -> None:
    """spec 2.2.3: the CRC-32C of the whole header with this field zeroed, big-endian."""
    if len(value) != 4:
        raise ProxyHeaderError("version 2: a CRC32C TLV of other than 4 bytes")
    zeroed = header[:offset] + b"\x00\x00\x00\x00" + header[offset + 4 :]
    if crc32c(zeroed) != int.from_bytes(value, "big"):
        raise ProxyHeaderError("version 2: CRC32C mismatch")


def _ssl(value: bytes) -> SSLInfo:
    """spec 2.2.6: ``client`` (1 byte), ``verify`` (4), then sub-TLVs."""
    if len(value) < 5:
        raise ProxyHeaderError("version 2: PP2_TYPE_SSL shorter than 5 bytes")
    fields: dict[str, str] = {}
    subs = _tlvs(value, 5, "SSL sub-TLV")
    for kind, sub, _ in subs:
        name = _SSL_STRINGS.get(kind)
        if name is not None:
            if name[0] in fields:
                raise ProxyHeaderError(f"version 2: SSL sub-TLV 0x{kind:02x} twice")
            fields[name[0]] = _text(sub, name[1], f"SSL sub-TLV 0x{kind:02x}")
    client, verify = value[0], int.from_bytes(value[1:5], "big")
    return SSLInfo(client, verify, tlvs=tuple((k, v) for k, v, _ in subs), **fields)


def _text(value: bytes, encoding: str, what: str) -> str:
    try:
        return value.decode(encoding)
    except UnicodeDecodeError:
        raise ProxyHeaderError(f"version 2: {what} is not {encoding}") from None
