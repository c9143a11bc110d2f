"""The strict checks of an HTTP/1 request head, before h11 parses it (sans-I/O).

h11 is lenient where RFC 9112 lets a recipient be: it accepts a bare LF as a line end,
merges identical duplicate ``Content-Length`` values, accepts ``Content-Length`` together
with ``Transfer-Encoding``, and accepts obs-fold. A server behind a proxy must not be lenient:
if the two disagree on where a request ends, a request can be smuggled past the proxy
(docs/architecture.md, departure b). :func:`scan_head` refuses those with 400 and enforces
the request-line (414) and head-size (431) limits; :func:`valid_host` checks a Host value,
:func:`check_target` the form of a request-target (RFC 9112 section 3.2).
"""

from __future__ import annotations

import re
from typing import Protocol

from prefork.errors import ProtocolError


class HeadLimits(Protocol):
    """The limits :func:`scan_head` applies (``prefork.protocol.http1.Limits``)."""

    @property
    def max_request_line(self) -> int:
        """Longest request line in bytes."""

    @property
    def max_head_size(self) -> int:
        """Largest request head in bytes."""


# CTLs but HTAB, CR and LF (bare CR and LF are refused elsewhere): invalid in field values
# (RFC 9110 section 5.5, "MAY retain": strict, refused) and in the request-line.
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\n[ \t]")  # and obs-fold: one pass
# RFC 9112 section 3.2.2: absolute-form, for the two schemes an origin server serves
_ABSOLUTE = re.compile(rb"([Hh][Tt][Tt][Pp][Ss]?)://([^/?#]*)(.*)\Z", re.DOTALL)
_TCHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def scan_head(buf: bytes | bytearray, limits: HeadLimits, start: int = 0) -> int:
    """Check the request head at the start of ``buf``.

    Args:
        start: how many bytes of ``buf`` an earlier call already checked and found to be an
            incomplete head; only the rest is scanned, so a head that trickles in costs
            linear time.

    Returns:
        The offset just past the head's blank line, or -1 when the head is not complete yet.

    Raises:
        ProtocolError: with status 400, 414 or 431.
    """
    if buf and buf[0] not in _TCHARS:  # a method is a token (RFC 9110 section 9.1)
        raise ProtocolError("request line does not start with a method")
    end = buf.find(b"\r\n\r\n", start - 3 if start > 3 else 0)
    stop = len(buf) if end < 0 else end + 4
    # RFC 9112 section 2.2: a recipient MAY accept a bare LF; a server in front of which another
    # parser may sit must not, or the two disagree on where the head ends.
    if buf.count(b"\n", start, stop) != buf.count(b"\r\n", start - 1 if start else 0, stop):
        raise ProtocolError("bare LF in request head")
    limit = limits.max_request_line + 2
    line_end = buf.find(b"\r\n", 0, stop if stop < limit else limit)
    if line_end < 0:  # a CR at the end may be the first half of the line's CRLF
        line_end = stop - (buf[stop - 1 : stop] == b"\r")
    if line_end > limits.max_request_line:
        raise ProtocolError("request line too long", 414)
    if stop > limits.max_head_size:
        raise ProtocolError("request header section too large", 431)
    if end < 0:
        return -1
    _check_complete_head(bytes(buf[:stop]))
    return stop


def _check_complete_head(head: bytes) -> None:
    bad = _CTL.search(head)
    if bad is not None:
        if bad.group()[:1] == b"\n":  # RFC 9112 section 5.2: reject obs-fold
            raise ProtocolError("obsolete line folding in request head")
        # RFC 9110 section 5.5 (h11 lets them pass in field values)
        raise ProtocolError("control character in request head")
    lowered = head.lower()
    lengths = lowered.count(b"\ncontent-length:")
    te = lowered.find(b"\ntransfer-encoding:")
    codings = _transfer_codings(lowered, te) if te >= 0 else []
    if lengths:
        # RFC 9112 section 6.3 items 3 and 5: both framings, or several lengths, is smuggling.
        if lengths > 1:
            raise ProtocolError("more than one Content-Length")
        if codings:
            raise ProtocolError("both Content-Length and Transfer-Encoding")
        start = lowered.index(b"\ncontent-length:")
        if b"," in lowered[start : lowered.index(b"\r\n", start + 1)]:
            raise ProtocolError("more than one Content-Length")
    if te >= 0 and (codings[-1:] != [b"chunked"] or codings.count(b"chunked") > 1):
        # RFC 9112 section 6.3 item 4: chunked not last (or no coding at all) -> 400 and
        # close; section 6.1: chunked at most once. An unknown coding before chunked is h11's
        # 501.
        raise ProtocolError("Transfer-Encoding does not end with one chunked")


def _transfer_codings(lowered: bytes, start: int) -> list[bytes]:
    """The transfer codings of every Transfer-Encoding line (the first at ``start``), in
    order (lower case)."""
    codings: list[bytes] = []
    while start >= 0:
        value = lowered[start + 19 : lowered.index(b"\r\n", start + 1)]
        for coding in value.split(b","):
            coding = coding.strip(b" \t")
            if coding:  # RFC 9110 section 5.6.1: empty list elements are ignored
                codings.append(coding.partition(b";")[0].rstrip(b" \t"))
        start = lowered.find(b"\ntransfer-encoding:", start + 1)
    return codings


# RFC 9110 section 7.2: Host = uri-host [ ":" port ] (RFC 3986 section 3.2.2); empty is allowed
_HOST = re.compile(  # IP-literal, or reg-name (IPv4 included) in runs, then the port
    rb"(?:\[[0-9A-Za-z:.!$&'()*+,;=\-_~]+\]|(?:[0-9A-Za-z!$&'()*+,;=\-._~]+|%[0-9A-Fa-f]{2})*)"
    rb"(?::[0-9]*)?\Z"
)


def valid_host(value: bytes) -> bool:
    """Whether ``value`` is ``uri-host [ ":" port ]`` (or empty), RFC 9110 section 7.2."""
    return _HOST.match(value) is not None


def check_target(method: bytes, target: bytes) -> None:
    """Check that the form of a request-target fits its method (RFC 9112 section 3.2).

    CONNECT takes authority-form (``host:port``, section 3.2.3), OPTIONS may take ``*``
    (section 3.2.4), and any other method origin-form or absolute-form (section 3.2.2) with an
    http(s) scheme and a valid, non-empty host without userinfo (RFC 9110 sections 4.2.1 and
    4.2.4; strict: other schemes are refused, this is an origin server). The characters of
    the target are h11's to check.

    Raises:
        ProtocolError: (400) the target does not fit.
    """
    if method == b"CONNECT":
        host, _, port = target.rpartition(b":")
        if not host or not port.isdigit() or not valid_host(target):
            raise ProtocolError("CONNECT needs an authority-form target (host:port)")
    elif target == b"*":
        if method != b"OPTIONS":
            raise ProtocolError("asterisk-form target for a method other than OPTIONS")
    elif target[:1] != b"/":
        match = _ABSOLUTE.match(target)
        authority = match.group(2) if match else b""
        if authority[:1] in (b"", b":") or not valid_host(authority):
            raise ProtocolError("request-target is not origin-form or absolute-form")


def split_absolute(method: bytes, target: bytes) -> tuple[str, str, str]:
    """Split an absolute-form target that :func:`check_target` passed.

    Returns:
        ``(scheme, authority, path)``: the scheme in lower case, and the path as HTTP/2
        carries it in ``:path`` (RFC 9113 section 8.3.1): ``/`` for an empty path (RFC 9110
        section 4.2.3), ``*`` for an OPTIONS request without one.
    """
    match = _ABSOLUTE.match(target)
    assert match is not None, "check_target refuses other targets"
    scheme, authority, path = (part.decode("latin-1") for part in match.groups())
    if not path:
        path = "*" if method == b"OPTIONS" else "/"
    elif path[0] == "?":
        path = "/" + path
    return scheme.lower(), authority, path
