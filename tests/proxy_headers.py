"""PROXY protocol headers for the tests, built the way a balancer sends them (HAProxy's
specification, "The PROXY protocol, Versions 1 & 2"): text version 1, binary version 2 with
TLVs and an optional CRC32C, and the PP2_TYPE_SSL value."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from prefork.protocol import proxy
from prefork.protocol.crc32c import crc32c

SIGNATURE = proxy.V2_SIGNATURE


def v1(source: tuple[str, int], destination: tuple[str, int], protocol: str | None = None) -> bytes:
    """``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n`` (the family from the source address)."""
    if protocol is None:
        protocol = "TCP6" if ":" in source[0] else "TCP4"
    return (
        f"PROXY {protocol} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
    ).encode("ascii")


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


def ssl_value(
    client: int = proxy.CLIENT_SSL, verify: int = 0, subs: Sequence[tuple[int, bytes]] = ()
) -> bytes:
    """The value of a PP2_TYPE_SSL TLV: client flags, verify, sub-TLVs."""
    return bytes([client]) + verify.to_bytes(4, "big") + b"".join(tlv(k, v) for k, v in subs)


def v2(
    source: tuple[str, int] | str | None = None,
    destination: tuple[str, int] | str | None = None,
    *,
    command: int = 1,
    tlvs: Sequence[tuple[int, bytes]] = (),
    crc: bool = False,
    transport: int = 1,
    version: int = 2,
) -> bytes:
    """A version 2 header: INET, INET6 (from the source address), UNIX (a path) or, without
    addresses, AF_UNSPEC; ``crc`` appends a PP2_TYPE_CRC32C TLV with the right checksum."""
    if source is None:
        family, block = 0, b""
        transport = 0
    elif isinstance(source, str):
        assert isinstance(destination, str)
        family = 3
        block = source.encode().ljust(108, b"\0") + destination.encode().ljust(108, b"\0")
    else:
        assert isinstance(destination, tuple)
        ip = ipaddress.ip_address(source[0])
        family = 1 if ip.version == 4 else 2
        block = (
            ip.packed
            + ipaddress.ip_address(destination[0]).packed
            + source[1].to_bytes(2, "big")
            + destination[1].to_bytes(2, "big")
        )
    body = block + b"".join(tlv(k, v) for k, v in tlvs)
    if crc:
        body += tlv(proxy.CRC32C, b"\0\0\0\0")
    head = SIGNATURE + bytes([version << 4 | command, family << 4 | transport])
    header = head + len(body).to_bytes(2, "big") + body
    if crc:
        header = header[:-4] + crc32c(header).to_bytes(4, "big")
    return header


def local_v2() -> bytes:
    """A LOCAL command (a balancer's health check), AF_UNSPEC, no addresses."""
    return v2(command=0)


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET
