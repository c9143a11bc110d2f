"""CRC-32C (Castagnoli), for the PROXY protocol's ``PP2_TYPE_CRC32C`` check.

The standard library has only the CRC-32 of zlib, whose polynomial differs. This is the
table-driven, bit-reflected form of RFC 4960 appendix B (reflected polynomial 0x82F63B78,
initial value and final XOR 0xFFFFFFFF). A PROXY header is at most 65,551 bytes and usually a
few hundred, so a byte at a time is fast enough.
"""

from __future__ import annotations

_POLY = 0x82F63B78


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """The CRC-32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
