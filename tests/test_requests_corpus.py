"""The request corpus (tests/requests/, format in tests/requests/corpus.py), two ways.

Every file runs (a) through the sans-I/O ``RequestParser`` with each field-line splitter
(``h11`` and ``httptools``), whole and split into one-byte segments: an invalid case raises
``ProtocolError`` with its status, a valid case yields one ``Request``, its body and
trailers, and nothing is left over; and (b) through a real server on
127.0.0.1 with a raw socket: the status line, then either the end of the connection (read to
EOF, bounded by a timeout) or, for a keep-alive case, a second request answered on the same
connection. After each case a fresh connection must still be served and the server loop must
have reported nothing.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import pytest

from prefork.errors import ProtocolError
from prefork.protocol import http1
from prefork.protocol.http1 import Limits, RequestParser, splitter
from tests.conftest import Running
from tests.requests.client import ECHOED, Client, echo
from tests.requests.corpus import Case, load_all

CASES = load_all()
IDS = [case.id for case in CASES]
READ_TIMEOUT = 3.0  # a server that never answers fails fast, well under pytest-timeout
# within every case's limits (max_request_line=17, max_head_size=100, max_header_count=3)
FOLLOW_UP = b"GET /n HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_the_corpus_covers_both_kinds() -> None:
    valid = [case for case in CASES if case.valid]
    assert len(valid) >= 30 and len(CASES) - len(valid) >= 80, len(CASES)
    assert len({case.id for case in CASES}) == len(CASES)


# -- (a) the sans-I/O parser ----------------------------------------------------------------------


def parse(case: Case, pieces: list[bytes], http: str) -> tuple[RequestParser, list[Any]]:
    """Feed ``pieces`` (then EOF for ``send: eof``) and collect events until the request ends."""
    parser = RequestParser(Limits(**case.options), "http", splitter(http))
    out: list[Any] = []
    feeds = [*pieces, b""] if case.eof else pieces
    for piece in feeds:
        parser.receive_data(piece)
        while True:
            event = parser.next_event()
            if event is http1.NEED_DATA:
                break
            out.append(event)
            if event is http1.PAUSED or isinstance(event, http1.ConnectionClosed):
                return parser, out
    return parser, out


def split(case: Case, how: str) -> list[bytes]:
    raw = case.raw
    return [raw] if how == "whole" else [raw[i : i + 1] for i in range(len(raw))]


@pytest.mark.parametrize("http", ["h11", "httptools"])
@pytest.mark.parametrize("how", ["whole", "bytewise"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parser(case: Case, how: str, http: str) -> None:
    if not case.valid:
        with pytest.raises(ProtocolError) as info:
            parse(case, split(case, how), http)
        assert info.value.status == case.status, info.value
        return
    parser, events = parse(case, split(case, how), http)
    request, *middle, end, paused = events
    assert isinstance(request, http1.Request), events
    assert all(isinstance(event, http1.Data) for event in middle), events
    assert isinstance(end, http1.EndOfMessage) and paused is http1.PAUSED, events
    assert b"".join(bytes(event.data) for event in middle) == case.body
    assert end.headers == case.trailers
    assert parser.pending == 0, "the request did not take all of its bytes"
    assert request.keep_alive is case.keep_alive
    for name, value in case.fields:
        assert request.headers.get(name) == value, (name, request.headers.items())


# -- (b) a real server ---------------------------------------------------------------------------


def exchange(running: Running, case: Case) -> None:
    with running.connect(READ_TIMEOUT) as sock:
        with contextlib.suppress(OSError):  # EPIPE, ECONNRESET, ENOTCONN: the server closed first
            sock.sendall(case.raw)  # the server may answer and close before taking it all
            if case.eof:
                sock.shutdown(socket.SHUT_WR)
        client = Client(sock)
        no_body = case.valid and case.method in (b"HEAD", b"CONNECT")  # RFC 9110 section 6.4.1
        reply = client.reply(body=not no_body)
        assert reply.status == case.status, reply
        if not case.valid:
            assert "close" in [v.lower() for v in reply.get("connection")], reply
            assert client.rest() == b"", "bytes after an error response"
            return
        assert reply.body == case.body
        for name, value in case.fields:
            if name in ECHOED:
                assert reply.get("x-" + name.lstrip(":")) == [value], (name, reply)
        if not case.keep_alive:
            assert client.rest() == b"", "the connection goes on after a closing response"
            return
        sock.sendall(FOLLOW_UP)
        second = client.reply()
        assert second.status == 200 and second.get("x-path") == ["/n"], second
        assert client.rest() == b""


def assert_still_serving(running: Running) -> None:
    with running.connect(READ_TIMEOUT) as sock:
        sock.sendall(FOLLOW_UP)
        client = Client(sock)
        assert client.reply().status == 200
        assert client.rest() == b""
    assert running.thread.is_alive()
    assert running.errors == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_server(serve, case: Case) -> None:
    # A short idle timeout: a server that waits instead of answering closes before
    # READ_TIMEOUT, and the case fails on "ended before a response" rather than hanging.
    running = serve(echo, intra_stream_timeout=2.0, **case.options)
    exchange(running, case)
    assert_still_serving(running)
