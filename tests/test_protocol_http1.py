"""The sans-I/O HTTP/1 layer on its own: bytes in, events out; responses framed to bytes.

Every parser test runs with both field-line splitters (the ``http`` option: ``h11``, pure
Python, and ``httptools``): the ``new_parser`` fixture."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from prefork.errors import ProtocolError
from prefork.protocol import h1response, http1
from prefork.protocol.h1head import scan_head
from prefork.protocol.h1response import ResponseFramer
from prefork.protocol.http1 import Limits, RequestParser, splitter

PARSERS = ["h11", "httptools"]


@pytest.fixture(params=PARSERS)
def new_parser(request) -> Callable[[Limits], RequestParser]:
    """Makes a ``RequestParser`` with each splitter in turn."""
    return lambda limits: RequestParser(limits, "http", splitter(request.param))


DATE = "Wed, 25 Nov 2026 17:00:00 GMT"


def events(parser: RequestParser) -> list:
    out = []
    while True:
        event = parser.next_event()
        out.append(event)
        if event in (http1.NEED_DATA, http1.PAUSED) or isinstance(event, http1.ConnectionClosed):
            return out


# -- scan_head ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\nHost: a\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\ncontent-length: 1\r\nCONTENT-LENGTH: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /" + b"a" * 9000, 414),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 20000, 431),
    ],
)
def test_scan_head_rejects(raw, status):
    with pytest.raises(ProtocolError) as info:
        scan_head(raw, Limits())
    assert info.value.status == status


def test_scan_head_finds_the_end_and_waits_for_more():
    head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert scan_head(head + b"body\n", Limits()) == len(head)
    assert scan_head(head[:-1], Limits()) == -1
    assert scan_head(b"GET / HT", Limits()) == -1


# -- RequestParser ------------------------------------------------------------------------------


def test_pipelined_requests_come_one_cycle_at_a_time(new_parser):
    parser = new_parser(Limits())
    parser.receive_data(
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    first = events(parser)
    kinds = [http1.Request, http1.Data, http1.EndOfMessage, type(http1.PAUSED)]
    assert [type(e) for e in first] == kinds
    assert first[0].target == b"/a"
    parser.start_next_cycle()
    second = events(parser)
    assert second[0].target == b"/b"


def test_pipelined_request_with_a_bad_head_is_caught_too(new_parser):
    parser = new_parser(Limits())
    parser.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\nHost: x\n\n")
    events(parser)
    parser.start_next_cycle()
    with pytest.raises(ProtocolError):
        parser.next_event()


def test_leading_empty_lines_are_ignored(new_parser):
    parser = new_parser(Limits())
    parser.receive_data(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(parser.next_event(), http1.Request)


def test_eof_between_requests_and_in_a_head(new_parser):
    parser = new_parser(Limits())
    parser.receive_data(b"")
    assert isinstance(parser.next_event(), http1.ConnectionClosed)
    parser = new_parser(Limits())
    parser.receive_data(b"GET / HT")
    parser.receive_data(b"")
    with pytest.raises(ProtocolError):
        parser.next_event()


@pytest.mark.parametrize(
    ("raw", "limits", "status"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
            Limits(max_body_size=10),
            413,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n",
            Limits(max_body_size=10),
            413,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"A: b\r\n" * 5 + b"\r\n",
            Limits(max_header_count=5),
            431,
        ),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Limits(), 400),
        # RFC 9112 section 6.3: chunked not the final coding -> 400 (and close)
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", Limits(), 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Limits(), 501),
        (b"GET / HTTP/1.1\r\n\r\n", Limits(), 400),
    ],
)
def test_request_limits(new_parser, raw, limits, status):
    parser = new_parser(limits)
    parser.receive_data(raw)
    with pytest.raises(ProtocolError) as info:
        events(parser)
    assert info.value.status == status


def test_describe_request(new_parser):
    parser = new_parser(Limits())
    parser.receive_data(
        b"PUT /p?q HTTP/1.1\r\nHost: example.com\r\nConnection: Keep-Alive, Close\r\n"
        b"Expect: 100-continue\r\nCookie: a=b\r\n\r\n"
    )
    info = parser.next_event()
    assert info.headers.items()[:4] == [
        (":method", "PUT"),
        (":path", "/p?q"),
        (":scheme", "http"),
        (":authority", "example.com"),
    ]
    assert info.headers.get("host") == "example.com"
    assert info.keep_alive is False
    assert info.expects_continue is True
    assert info.version == 1.1
    assert info.headers.geti(info.headers.len() - 1)[2] is True  # cookie is never indexed


def test_describe_connect_and_http10_keep_alive(new_parser):
    parser = new_parser(Limits())
    parser.receive_data(b"CONNECT example.com:443 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    info = parser.next_event()
    assert info.headers.get(":authority") == "example.com:443"
    assert not info.headers.has(":path")
    assert info.keep_alive is True
    assert info.version == 1.0


# -- ResponseFramer -----------------------------------------------------------------------------


def frame(method=b"GET", peer=1.1, keep=True, version=1.1, status=200, fields=(), end=False):
    framer = ResponseFramer(method, peer, keep, version)
    head = framer.head(status, list(fields), end, DATE)
    return framer, head


def test_content_length_framing():
    framer, head = frame(fields=[("content-length", "5")])
    assert head.startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n")
    assert f"date: {DATE}".encode() in head
    assert framer.data(b"hel") + framer.data(b"lo") == b"hello"
    assert framer.end() == b""
    assert framer.keep_alive
    with pytest.raises(ValueError):
        framer.data(b"!")


def test_short_content_length_cannot_end():
    framer, _ = frame(fields=[("content-length", "5")])
    framer.data(b"hi")
    with pytest.raises(ValueError, match="short"):
        framer.end()


def test_chunked_framing_with_trailers():
    framer, head = frame()
    assert b"transfer-encoding: chunked\r\n" in head
    assert framer.data(b"hello") == b"5\r\nhello\r\n"
    assert framer.data(b"") == b""
    assert framer.end([("x-sum", "1")]) == b"0\r\nx-sum: 1\r\n\r\n"


def test_end_stream_at_head_sends_content_length_zero():
    _, head = frame(end=True)
    assert b"content-length: 0\r\n" in head
    assert b"transfer-encoding" not in head


def test_http10_peer_gets_close_delimited_body():
    framer, head = frame(peer=1.0, keep=False)
    assert b"transfer-encoding" not in head
    assert b"connection: close\r\n" in head
    assert framer.mode == h1response.UNTIL_CLOSE
    assert not framer.keep_alive


def test_http10_keep_alive_needs_a_length():
    framer, head = frame(peer=1.0, keep=True, fields=[("content-length", "2")])
    assert b"connection: keep-alive\r\n" in head
    assert framer.keep_alive


def test_server_pinned_to_http10_writes_http10_status_lines():
    framer, head = frame(peer=1.1, version=1.0)
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert framer.mode == h1response.UNTIL_CLOSE


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)])
def test_no_body_responses(method, status):
    framer, head = frame(method=method, status=status, fields=[("content-length", "10")])
    assert framer.mode == h1response.NO_BODY
    assert b"transfer-encoding" not in head
    assert (b"content-length: 10" in head) is (status != 204)
    assert framer.data(b"dropped") == b""


def test_handler_connection_close_ends_keep_alive():
    framer, head = frame(fields=[("connection", "close"), ("content-length", "0")])
    assert not framer.keep_alive
    assert head.count(b"connection: close") == 1


@pytest.mark.parametrize(
    "fields",
    [
        [("bad name", "v")],
        [("x", "a\r\nInjected: yes")],
        [("x", "nul\x00")],
        [("content-length", "-1")],
        [("content-length", "1"), ("content-length", "1")],
        [("transfer-encoding", "gzip")],
        [("x", "\u2603")],
    ],
)
def test_unsendable_headers_raise(fields):
    with pytest.raises(ValueError):
        frame(fields=fields)


def test_informational_and_unknown_status():
    framer = ResponseFramer(b"GET", 1.1, True, 1.1)
    assert (
        framer.head(103, [("link", "</a>")], False, DATE)
        == b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
    )
    _, head = frame(status=599)
    assert head.startswith(b"HTTP/1.1 599 \r\n")
    with pytest.raises(ValueError):
        frame(status=1000)


def test_sendfile_framing():
    framer, _ = frame()
    assert framer.frame_size(10) == (b"a\r\n", b"\r\n")
    framer, _ = frame(fields=[("content-length", "10")])
    assert framer.frame_size(10) == (b"", b"")
    assert framer.end() == b""


# -- linear head scanning (issue 9 item 5) ------------------------------------------------------


def test_scan_head_checks_only_what_it_has_not_seen() -> None:
    """``start`` skips bytes an earlier call checked: a trickled head is not rescanned."""
    seen = b"GET / HTTP/1.1\r\nX-A: 1\n"  # a bare LF the earlier call would have refused
    assert scan_head(seen + b"X-B: 2\r\n", Limits(), start=len(seen)) == -1
    with pytest.raises(ProtocolError):
        scan_head(seen + b"X-B: 2\r\n", Limits())
    # the blank line found across the boundary of two segments
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert scan_head(head, Limits(), start=len(head) - 1) == len(head)


def test_trickled_head_costs_linear_time(new_parser) -> None:
    """A 64 KiB head in 1-byte segments: about 0.1 s here; it took 2.9 s when each segment
    rescanned and copied the whole buffer (a bound 20x above the linear cost)."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 60000 + b"\r\n\r\n"
    parser = new_parser(Limits(max_head_size=65536))
    start = time.process_time()
    for i in range(len(head)):
        parser.receive_data(head[i : i + 1])
        event = parser.next_event()
    assert time.process_time() - start < 1.5
    assert isinstance(event, http1.Request)
    assert event.headers.get("x-pad") == "a" * 60000


def test_trickled_trailers_are_parsed(new_parser) -> None:
    raw = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n"
    )
    parser = new_parser(Limits())
    seen = []
    for i in range(len(raw)):
        parser.receive_data(raw[i : i + 1])
        seen += [e for e in events(parser) if not isinstance(e, type(http1.NEED_DATA))]
    ends = [e for e in seen if isinstance(e, http1.EndOfMessage)]
    assert ends and ends[0].headers == [(b"x-t", b"1"), (b"x-u", b"2")]
    assert b"".join(bytes(e.data) for e in seen if isinstance(e, http1.Data)) == b"abc"


# -- Host (RFC 9112 section 3.2) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        b"example.com",
        b"example.com:8080",
        b"127.0.0.1:80",
        b"[::1]:8080",
        b"[::1]",
        b"",
        b"xn--caf-dma.example",
        b"a%20b",
        b"localhost:",
    ],
)
def test_valid_host_values_are_accepted(new_parser, host: bytes) -> None:
    parser = new_parser(Limits())
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert isinstance(parser.next_event(), http1.Request)


@pytest.mark.parametrize(
    "host", [b"bad host", b"a/b", b"u@a", b"a:8x", b"[::1", b'a"b', b"a%2", b"a:1:2"]
)
def test_invalid_host_values_get_400(new_parser, host: bytes) -> None:
    parser = new_parser(Limits())
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        parser.next_event()
    assert info.value.status == 400


def test_a_failed_parser_stays_failed(new_parser) -> None:
    """After a chunk over max_body_size (413) the parser raises that 413 again, instead of
    reading the chunk's data as the next size line (400)."""
    parser = new_parser(Limits(max_body_size=10))
    parser.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\n"
    )
    with pytest.raises(ProtocolError) as first:
        events(parser)
    assert first.value.status == 413
    parser.receive_data(b"y" * 16 + b"\r\n0\r\n\r\n")
    with pytest.raises(ProtocolError) as again:
        parser.next_event()
    assert again.value is first.value
