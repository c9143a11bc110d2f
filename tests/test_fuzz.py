"""Fuzzing the HTTP/1 request path with hypothesis (issue 9 item 17), in bounded runs.

Inputs are random request heads built from parts chosen to collide (methods, target forms,
versions, framing fields, bodies), and the valid corpus (tests/requests/valid) mutated: byte
flips, insertions of CR, LF, NUL, SP, colon and friends, deletions, truncation, a pipelined
second request; then split into random segments.

Invariants:
  - the sans-I/O ``RequestParser`` yields a valid event stream (Request, Data..., EndOfMessage,
    PAUSED, per request; a Content-Length body of that length) or raises ``ProtocolError``
    with a 4xx/5xx status it documents; nothing else escapes it, and the outcome does not
    depend on how the bytes were segmented (``tools.fuzz_http1.outcome`` and ``agree``,
    shared with the atheris target), nor on the field-line splitter (``h11`` or
    ``httptools``: every field, status and body the same);
  - a real server answers the same bytes with well-formed responses that match the parser's
    outcome: one 200 per complete request, then the error status, if any; a fresh connection
    is still served and the server loop reported nothing.

Runs are derandomized (the same examples every run, so CI cannot flake) and bounded
(``max_examples``), about 5 s here. ``tools/fuzz_http1.py`` is the coverage-guided target for
long runs with atheris.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import prefork.server
from prefork.protocol.http2 import PREFACE
from tests.conftest import Running
from tests.requests.client import Client, echo
from tests.requests.corpus import load_all
from tools.fuzz_http1 import FAST, LIMITS, Outcome, agree, outcome

READ_TIMEOUT = 3.0
VALID = [case.raw for case in load_all() if case.valid]
SPECIAL = [bytes([b]) for b in b'\r\n\x00 \t:;,="\\\x0b\x0c\x7f\x80\x85\xff0Ff-+']
PARSER = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SERVER = settings(PARSER, max_examples=250)

# -- inputs ---------------------------------------------------------------------------------------

METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"CONNECT", b"OPTIONS", b"get", b"G\x00T", b""]
TARGETS = [
    b"/",
    b"/a?b",
    b"*",
    b"http://a.example/p",
    b"a.example:443",
    b"//x",
    b"/ /",
    b"",
    b"/" + b"a" * 200,
]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "]
GOOD_FIELDS = [
    b"Host: x",
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"Content-Length: 65",
    b"Transfer-Encoding: chunked",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Expect: 100-continue",
    b"X-A: \x85",
]
BAD_FIELDS = [
    b"Host: a b",
    b"Content-Length: 3, 3",
    b"Content-Length: -1",
    b"Content-Length: 99999999999999999999",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, identity",
    b"Transfer-Encoding : chunked",
    b"Transfer-Encoding:\x0bchunked",
    b"Transfer-Encoding:",
    b" folded",
    b": empty",
    b"X-Long: " + b"a" * 300,
]
BODIES = [
    b"",
    b"abc",
    b"3\r\nabc\r\n0\r\n\r\n",
    b"3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"ffffffffffffffffff\r\n",
    b"3\r\nabcd\r\n0\r\n\r\n",
    b"0\r\n\r\n",
    b"41\r\n",
    b"\r\n",
    b"GET / HTTP/1.1\r\nHost: y\r\n\r\n",
]


@st.composite
def built_request(draw: Any) -> bytes:
    """A request assembled from parts picked to collide (CL with TE, forms with methods...)."""
    # half the time a part is one that works, so that most heads get as far as their fields
    parts = [
        draw(st.sampled_from(p[:3]) | st.sampled_from(p)) for p in (METHODS, TARGETS, VERSIONS)
    ]
    line = b" ".join(parts)
    fields = draw(st.lists(st.sampled_from(GOOD_FIELDS), max_size=4))
    if draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))), draw(st.sampled_from(BAD_FIELDS)))
    return b"\r\n".join([line, *fields, b"", draw(st.sampled_from(BODIES))])


@st.composite
def mutated_request(draw: Any) -> bytes:
    """A valid corpus request with up to four mutations."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "insert", "insert", "delete", "truncate", "pipeline"]))
        body = data.find(b"\r\n\r\n") + 4  # half the mutations hit the body, if any
        at = draw(st.integers(body if body > 3 and draw(st.booleans()) else 0, len(data)))
        if op == "flip" and data:
            data[min(at, len(data) - 1)] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=3))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[at:]
        elif op == "pipeline":
            data += draw(st.sampled_from(VALID))
    return bytes(data)


requests = st.one_of(built_request(), mutated_request(), st.binary(max_size=120))


@st.composite
def segmented(draw: Any) -> tuple[bytes, list[bytes]]:
    """Bytes and the segments they arrive in: random cuts, or one byte at a time."""
    data = draw(requests)
    if draw(st.integers(0, 3)) == 0:
        return data, [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=8))))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds) if a < b]


# -- the parser -----------------------------------------------------------------------------------


@PARSER
@given(segmented())
def test_parser_survives_and_ignores_segmentation(case: tuple[bytes, list[bytes]]) -> None:
    data, pieces = case
    assert agree(outcome(pieces), outcome([data]))


@PARSER
@given(segmented())
@pytest.mark.skipif(FAST is None, reason="httptools is not installed")
def test_both_splitters_give_the_same_outcome(case: tuple[bytes, list[bytes]]) -> None:
    _, pieces = case
    assert outcome(pieces, split=FAST) == outcome(pieces)


# -- a real server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    """One server for every example (hypothesis does not rerun function-scoped fixtures)."""
    server = prefork.server.listen(
        onstream=echo,
        host="127.0.0.1",
        port=0,
        tls=False,
        intra_stream_timeout=2.0,
        **dataclasses.asdict(LIMITS),
    )
    server.listen()
    handle = Running(server)
    yield handle
    handle.stop()


def expected(result: Outcome) -> tuple[list[int], list[bool]]:
    """The statuses the server should send for ``result``, and which responses have a body."""
    statuses, bodies = [], []
    for method, *_, keep_alive in result.requests:
        statuses.append(200)
        bodies.append(method not in (b"HEAD", b"CONNECT"))  # RFC 9110 sections 9.3.2, 9.3.6
        if not keep_alive:
            return statuses, bodies
    if result.status is not None and not (result.in_body and result.at_eof):
        # a bad head is answered at once; a bad body through the handler's read. A body cut
        # short by EOF is a vanished client: no one to answer (checked apart below).
        statuses.append(result.status)
        bodies.append(True)
    return statuses, bodies


def exchange(running: Running, pieces: list[bytes], bodies: list[bool]) -> list[int]:
    """Send ``pieces``, half-close, read to EOF: the statuses of the final responses."""
    statuses: list[int] = []
    with running.connect(READ_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError):  # EPIPE, ECONNRESET, ENOTCONN: the server closed first
            for piece in pieces:
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
        client = Client(sock)
        while client.buf or client._fill():
            body = bodies[len(statuses)] if len(statuses) < len(bodies) else True
            reply = client.reply(body)
            if reply.status >= 200:  # 100 Continue is not an answer
                statuses.append(reply.status)
    return statuses


def still_serving(running: Running) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert exchange(running, [request], [True]) == [200]
    assert running.thread.is_alive() and running.errors == []


@SERVER
@given(segmented())
def test_server_answers_like_the_parser(running: Running, case: tuple[bytes, list[bytes]]) -> None:
    data, pieces = case
    # the HTTP/2 connection preface (or its start) makes a plaintext connection HTTP/2
    assume(not (data and PREFACE.startswith(data[: len(PREFACE)])))
    result = outcome([data])
    statuses, bodies = expected(result)
    got = exchange(running, pieces, bodies)
    if result.in_body and result.at_eof and got[len(statuses) :]:
        assert got == [*statuses, 400], (got, result)  # answered anyway: the parser's 400
    else:
        assert got == statuses, (got, result)
    still_serving(running)
