"""The field lines of a request head split by llhttp (httptools), sans-I/O: ``--http httptools``.

:func:`split_fields` is a :data:`~prefork.protocol.h1request.Splitter`: it only cuts the
field lines of a head that prefork's own checks passed into pairs; every check is still
prefork's (:mod:`prefork.protocol.h1request`), so both splitters give the same answers.

llhttp refuses methods it does not know and versions other than 1.0 and 1.1, which prefork
serves (RFC 9110 sections 9.1 and 2.5), so it is given a fixed request line and then the
field lines. A fresh parser per head (about 0.2 us) because llhttp would next expect the body
that the fields announce. Where llhttp refuses a head the checks passed (its own limits, such
as a Content-Length over 2^64, which the checks refuse after the split, with the status of
that fault's place in their order), the regular expression splits it instead.
"""

from __future__ import annotations

import httptools

from prefork.protocol.h1request import split_fields as split_by_regex

_REQUEST_LINE = b"GET / HTTP/1.1\r\n"


class _Fields:
    """llhttp's callbacks: only complete field lines are kept."""

    __slots__ = ("pairs",)

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the OWS before a value, not the OWS after it (RFC 9112 section 5)
        self.pairs.append((name.decode("latin-1").lower(), value.decode("latin-1").rstrip(" \t")))


def split_fields(text: str, head: bytes, start: int) -> list[tuple[str, str]]:
    """Split the field lines (``head[start:]``, ending with the blank line) with llhttp."""
    fields = _Fields()
    parser = httptools.HttpRequestParser(fields)
    try:
        parser.feed_data(_REQUEST_LINE)
        parser.feed_data(memoryview(head)[start:])
    except httptools.HttpParserUpgrade:
        pass  # Connection: upgrade (h2c, WebSocket): the fields are all in
    except httptools.HttpParserError:
        return split_by_regex(text, head, start)
    return fields.pairs
