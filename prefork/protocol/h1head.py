"""The strict checks of an HTTP/1 request head (sans-I/O).

prefork parses request heads itself and is strict where RFC 9112 lets a recipient be lenient:
a server behind a proxy must not be, for if the two disagree on where a request ends, a
request can be smuggled past the proxy (docs/architecture.md, departure b). :func:`find_head`
finds the end of a head as its bytes arrive, refusing a bare LF at once and enforcing the
request-line (414) and head-size (431) limits; :func:`check_head` checks a complete head
against the grammar of RFC 9112 sections 3 and 5 (no obs-fold, no control characters) and
refuses ambiguous framing (several Content-Length, Content-Length with Transfer-Encoding);
:func:`scan_head` is the two together. :func:`valid_host` checks a Host value,
:func:`check_target` the form of a request-target (RFC 9112 section 3.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prefork.errors import ProtocolError


@dataclass(frozen=True)
class Limits:
    """Hard limits on what a client may send (RFC 9112 section 2.3 leaves them to the server).

    Attributes:
        max_request_line: longest request line in bytes; longer -> 414.
        max_header_count: most header fields in a request head; more -> 431.
        max_head_size: largest request head (request line + header section) in bytes -> 431.
        max_body_size: largest request body in bytes, None for no limit -> 413.
    """

    max_request_line: int = 8190
    max_header_count: int = 100
    max_head_size: int = 65536
    max_body_size: int | None = None


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+"
# RFC 9112 section 3: request-line = method SP request-target SP HTTP-version CRLF, with the
# target's characters those of RFC 3986 (visible ASCII); section 5: field-line = field-name ":"
# OWS field-value OWS, a value being visible characters, obs-text, SP and HTAB (RFC 9110
# section 5.5: the other control characters, which a recipient MAY retain, are refused here).
# No obs-fold (RFC 9112 section 5.2), no bare CR or LF. Possessive: linear, whatever the input.
_HEAD = re.compile(
    rb"(%s) ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])\r\n(?:%s:[\t\x20-\x7e\x80-\xff]*+\r\n)*+\r\n"
    % (_TOKEN, _TOKEN)
)
# only to name what is wrong with a head the grammar refused
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\n[ \t]")
_REQUEST_LINE = re.compile(rb"%s [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r\n" % _TOKEN)
# RFC 9112 section 3.2.2: absolute-form, for the two schemes an origin server serves
_ABSOLUTE = re.compile(r"([Hh][Tt][Tt][Pp][Ss]?)://([^/?#]*)(.*)\Z", re.DOTALL)
_TCHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def scan_head(buf: bytes | bytearray, limits: Limits, start: int = 0) -> int:
    """Find and check the request head at the start of ``buf``: :func:`find_head`, then
    :func:`check_head` once the head is complete.

    Returns:
        The offset just past the head's blank line, or -1 when the head is not complete yet.

    Raises:
        ProtocolError: with status 400, 414 or 431.
    """
    end = find_head(buf, limits, start)
    if end >= 0:
        check_head(bytes(buf[:end]))
    return end


def find_head(buf: bytes | bytearray, limits: Limits, start: int = 0) -> int:
    """Find the end of the request head at the start of ``buf``, checking what has arrived.

    Args:
        start: how many bytes of ``buf`` an earlier call already checked and found to be an
            incomplete head; only the rest is scanned, so a head that trickles in costs
            linear time.

    Returns:
        The offset just past the head's blank line, or -1 when the head is not complete yet.

    Raises:
        ProtocolError: a bare LF or a first byte that starts no method (400), a request line
            over the limit (414), a head over the limit (431).
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
    return -1 if end < 0 else stop


def check_head(head: bytes) -> tuple[re.Match[bytes], bytes]:
    """Check a complete request head (request line to blank line) against the grammar and
    the framing rules.

    Returns:
        The match of the head (groups: method, request-target, version digits) and the head
        in lower case, for the caller to read its fields from.

    Raises:
        ProtocolError: (400) the head breaks the grammar, or its framing is ambiguous.
    """
    match = _HEAD.fullmatch(head)
    if match is None:
        raise ProtocolError(_fault(head))
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
        # close; section 6.1: chunked at most once. Another coding before chunked is 501,
        # when the fields are read.
        raise ProtocolError("Transfer-Encoding does not end with one chunked")
    return match, lowered


def _fault(head: bytes) -> str:
    """What is wrong with a head the grammar refused, in words (for the debug log)."""
    bad = _CTL.search(head)
    if bad is not None:
        if bad.group()[:1] == b"\n":  # RFC 9112 section 5.2: reject obs-fold
            return "obsolete line folding in request head"
        return "control character in request head"  # RFC 9110 section 5.5
    if _REQUEST_LINE.match(head) is None:
        return "malformed request line"
    return "malformed header field line"


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
    r"(?:\[[0-9A-Za-z:.!$&'()*+,;=\-_~]+\]|(?:[0-9A-Za-z!$&'()*+,;=\-._~]+|%[0-9A-Fa-f]{2})*)"
    r"(?::[0-9]*)?\Z"
)


_good_hosts: set[str] = set()  # a keep-alive client sends the same Host again and again


def valid_host(value: str) -> bool:
    """Whether ``value`` is ``uri-host [ ":" port ]`` (or empty), RFC 9110 section 7.2."""
    if value in _good_hosts:
        return True
    if _HOST.match(value) is None:
        return False
    if len(_good_hosts) < 1024:
        _good_hosts.add(value)
    return True


def check_target(method: str, target: str) -> None:
    """Check that the form of a request-target fits its method (RFC 9112 section 3.2).

    CONNECT takes authority-form (``host:port``, section 3.2.3), OPTIONS may take ``*``
    (section 3.2.4), and any other method origin-form or absolute-form (section 3.2.2) with an
    http(s) scheme and a valid, non-empty host without userinfo (RFC 9110 sections 4.2.1 and
    4.2.4; strict: other schemes are refused, this is an origin server). The characters of
    the target are :func:`check_head`'s to check.

    Raises:
        ProtocolError: (400) the target does not fit.
    """
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit() or not valid_host(target):
            raise ProtocolError("CONNECT needs an authority-form target (host:port)")
    elif target == "*":
        if method != "OPTIONS":
            raise ProtocolError("asterisk-form target for a method other than OPTIONS")
    elif target[:1] != "/":
        match = _ABSOLUTE.match(target)
        authority = match.group(2) if match else ""
        if authority[:1] in ("", ":") or not valid_host(authority):
            raise ProtocolError("request-target is not origin-form or absolute-form")


def split_absolute(method: str, target: str) -> tuple[str, str, str]:
    """Split an absolute-form target that :func:`check_target` passed.

    Returns:
        ``(scheme, authority, path)``: the scheme in lower case, and the path as HTTP/2
        carries it in ``:path`` (RFC 9113 section 8.3.1): ``/`` for an empty path (RFC 9110
        section 4.2.3), ``*`` for an OPTIONS request without one.
    """
    match = _ABSOLUTE.match(target)
    assert match is not None, "check_target refuses other targets"
    scheme, authority, path = match.groups()
    if not path:
        path = "*" if method == "OPTIONS" else "/"
    elif path[0] == "?":
        path = "/" + path
    return scheme.lower(), authority, path
