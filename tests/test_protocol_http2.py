"""prefork.protocol.http2 and h2frames, sans-I/O: an h2 client and H2Protocol in memory.

The client is h2's own client connection; what it queues is fed to the server side (whole,
or a byte at a time), and the server's answer back, so every exchange is byte-exact and no
socket or clock is involved (the time is a number passed in).
"""

from __future__ import annotations

import random
from typing import Any

import h2.config
import h2.connection
import h2.events as ev
import h2.exceptions
import h2.settings
import hpack
import pytest
from h2.errors import ErrorCodes
from h2.utilities import HeaderValidationFlags, validate_headers
from hpack import HeaderTuple, NeverIndexedHeaderTuple
from hyperframe.frame import ContinuationFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from prefork.errors import ProtocolError
from prefork.headers import Headers
from prefork.protocol import h2fields
from prefork.protocol import http2 as proto
from prefork.protocol.h2frames import FrameScanner

REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]


class Pair:
    """An h2 client and an H2Protocol server, wired in memory."""

    def __init__(self, **settings: Any) -> None:
        self.server = proto.H2Protocol(proto.Settings(**settings))
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.client = h2.connection.H2Connection(config)
        self.client.initiate_connection()
        self.now = 0.0
        self.to_server()
        self.to_client()

    def ignore_limit(self) -> None:
        """The client forgets our MAX_CONCURRENT_STREAMS (as one that has not read it yet)."""
        del self.client.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS]

    def to_server(self, data: bytes | None = None, step: int = 0) -> list[Any]:
        """Give the server what the client queued (and ``data``), ``step`` bytes at a time."""
        data = self.client.data_to_send() + (data or b"")
        if not step:
            return self.server.receive_data(data, self.now)
        events: list[Any] = []
        for i in range(0, len(data), step):
            events += self.server.receive_data(data[i : i + step], self.now)
        return events

    def to_client(self) -> list[Any]:
        return self.client.receive_data(self.server.data_to_send())

    def request(self, sid: int, extra: list[tuple[str, str]] = (), end: bool = True) -> None:  # type: ignore[assignment]
        self.client.send_headers(sid, [*REQUEST, *extra], end_stream=end)


def requests(events: list[Any]) -> list[int]:
    return [e.stream_id for e in events if type(e) is proto.Request]


def resets(events: list[Any]) -> list[tuple[int, int]]:
    return [(e.stream_id, e.error_code) for e in events if isinstance(e, ev.StreamReset)]


def goaway_bytes(last: int, code: int = 0, debug: bytes = b"", stream_id: int = 0) -> bytes:
    frame = GoAwayFrame(0, last_stream_id=last, error_code=code, additional_data=debug)
    frame.stream_id = stream_id
    return frame.serialize()


# -- streams past the limit -----------------------------------------------------------------------


def test_stream_past_the_limit_is_refused_and_hpack_stays_in_step() -> None:
    pair = Pair(max_concurrent_streams=2)
    assert pair.client.remote_settings.max_concurrent_streams == 2  # advertised all the same
    pair.ignore_limit()
    pair.request(1)
    pair.request(3)
    pair.request(5, [("x-new", "indexed now")], end=False)  # a new HPACK dynamic table entry
    pair.client.send_data(5, b"in flight", end_stream=True)
    events = pair.to_server()
    assert requests(events) == [1, 3]  # 5 refused, not passed on
    assert resets(pair.to_client()) == [(5, ErrorCodes.REFUSED_STREAM)]
    assert not pair.server.closed
    pair.server.conn.send_headers(1, [(":status", "200")], end_stream=True)
    pair.to_client()
    # the same field again: the client encodes it as an index into the dynamic table, which
    # only holds it if the refused stream's block was decoded (RFC 9113 section 4.3)
    pair.request(7, [("x-new", "indexed now")])
    events = pair.to_server()
    [event] = [e for e in events if type(e) is proto.Request]
    assert (event.stream_id, event.headers.get("x-new")) == (7, "indexed now")


def test_a_client_keeping_to_the_limit_is_never_refused() -> None:
    # counted after the whole read: a stream closed earlier in the same read makes room
    pair = Pair(max_concurrent_streams=1)
    pair.request(1, end=False)
    assert requests(pair.to_server()) == [1]
    pair.client.reset_stream(1)
    pair.request(3)
    events = pair.to_server()
    assert requests(events) == [3]
    assert resets(pair.to_client()) == []


def test_refusing_many_streams_is_a_flood() -> None:
    pair = Pair(max_concurrent_streams=1)
    pair.ignore_limit()
    pair.request(1, end=False)
    pair.to_server()
    with pytest.raises(proto.ConnectionClosed) as caught:
        for sid in range(3, 1001, 2):
            pair.request(sid)
            pair.to_server()
    assert caught.value.error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_streams_above_our_goaway_are_refused_and_the_last_id_never_grows() -> None:
    pair = Pair()
    pair.request(1, end=False)
    pair.to_server()
    assert pair.server.goaway(2**31 - 1) == goaway_bytes(2**31 - 1)
    pair.request(3, end=False)
    assert requests(pair.to_server()) == [3]  # in flight before the client saw it
    assert pair.server.goaway(3) == goaway_bytes(3)
    assert pair.server.goaway(99) == goaway_bytes(3)  # RFC 9113 6.8: never increased
    pair.request(5)
    assert requests(pair.to_server()) == []
    assert resets(pair.to_client()) == [(5, ErrorCodes.REFUSED_STREAM)]
    pair.server.close()  # h2's GOAWAY names 3 too, not the refused 5
    frames = pair.server.data_to_send()
    assert frames[-8:] == (3).to_bytes(4, "big") + bytes(4)


# -- the client's GOAWAY --------------------------------------------------------------------------


@pytest.mark.parametrize("step", [0, 1, 5])
def test_client_goaway_is_an_event_and_the_open_streams_go_on(step: int) -> None:
    pair = Pair()
    pair.request(1, end=False)
    pair.client.send_data(1, b"before")
    head = pair.client.data_to_send()
    pair.client.send_data(1, b"after", end_stream=True)  # the client goes on after its GOAWAY
    tail = pair.client.data_to_send()
    events = pair.to_server(head + goaway_bytes(0, 0, b"bye") + tail, step)
    terminated = [e for e in events if isinstance(e, ev.ConnectionTerminated)]
    assert len(terminated) == 1
    assert (terminated[0].error_code, terminated[0].last_stream_id) == (ErrorCodes.NO_ERROR, 0)
    assert terminated[0].additional_data == b"bye"
    body = b"".join(e.data for e in events if isinstance(e, ev.DataReceived))
    assert body == b"beforeafter"
    assert any(isinstance(e, ev.StreamEnded) for e in events)
    pair.server.conn.send_headers(1, [(":status", "200")], end_stream=True)  # h2 goes on
    assert not pair.server.closed


def test_unknown_goaway_code_is_passed_on() -> None:
    pair = Pair()
    [event] = [
        e for e in pair.to_server(goaway_bytes(0, 0xABC)) if type(e) is not ev.SettingsAcknowledged
    ]
    assert event.error_code == 0xABC  # RFC 9113 section 7: unknown codes are not errors


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (goaway_bytes(0, stream_id=1), ErrorCodes.PROTOCOL_ERROR),  # RFC 9113 6.8: stream 0
        (b"\x00\x00\x04\x07\x00\x00\x00\x00\x00" + bytes(4), ErrorCodes.FRAME_SIZE_ERROR),
    ],
)
def test_malformed_goaway_is_a_connection_error(frame: bytes, code: int) -> None:
    pair = Pair()
    with pytest.raises(proto.ConnectionClosed) as caught:
        pair.to_server(frame)
    assert caught.value.error_code == code


def test_goaway_inside_a_header_block_is_a_connection_error() -> None:
    pair = Pair()
    block = pair.client.encoder.encode(REQUEST)
    headers = HeadersFrame(1, data=block[:3], flags=["END_STREAM"]).serialize()
    rest = ContinuationFrame(1, data=block[3:], flags=["END_HEADERS"]).serialize()
    with pytest.raises(proto.ConnectionClosed) as caught:
        pair.to_server(headers + goaway_bytes(0) + rest)
    assert caught.value.error_code == ErrorCodes.PROTOCOL_ERROR  # RFC 9113 section 6.10


def test_scanner_holds_back_an_incomplete_frame_header() -> None:
    scanner = FrameScanner(limit=1000, max_frame=16384)
    stream = proto.PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + goaway_bytes(7, 2)
    given = b"".join(scanner.feed(stream[i : i + 1]) or b"" for i in range(len(stream)))
    assert given == stream[: -len(goaway_bytes(7, 2))]  # all but the GOAWAY, in order
    assert scanner.goaways == [(7, 2, b"")]


# -- request and trailer fields: prefork's checks are h2's (RFC 9113 sections 8.2, 8.3) ----------

FLAGS = HeaderValidationFlags(
    is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False
)
TRAILER_FLAGS = FLAGS._replace(is_trailer=True)
NAMES = [
    b"x-a", b"accept", b"te", b"host", b"cookie", b"X-Upper", b"sp ace", b"co:lon", b"", b"del\x7f",
    b"non\xe9ascii", b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
    b"upgrade", b":status", b":custom", b":path", b":method", b"tab\t", b"ok!#$%&'*+-.^_`|~09",
]  # fmt: skip
VALUES = [
    b"v", b"", b"trailers", b"TRAILERS", b"gzip", b" lead", b"trail ", b"\ttab", b"tab\t",
    b"in ner", b"nul\x00", b"cr\r", b"lf\n", b"obs\xff", b"127.0.0.1", b"x",
]  # fmt: skip
PSEUDO = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"x")]


def h2_accepts(fields: list[tuple[bytes, bytes]], flags: Any) -> bool:
    try:
        list(validate_headers(fields, flags))
    except h2.exceptions.ProtocolError:
        return False
    return True


def prefork_accepts(fields: list[tuple[bytes, bytes]], check: Any) -> bool:
    try:
        check([HeaderTuple(*f) for f in fields])
    except ProtocolError:
        return False
    return True


def random_request(rng: random.Random) -> list[tuple[bytes, bytes]]:
    pseudo = [p for p in PSEUDO if rng.random() < 0.9]
    if rng.random() < 0.2:
        pseudo = [(n, b"CONNECT") if n == b":method" else (n, v) for n, v in pseudo]
    if rng.random() < 0.2:
        pseudo.append((b":protocol", b"websocket"))
    if rng.random() < 0.1:
        pseudo.append(rng.choice(PSEUDO))  # repeated
    if rng.random() < 0.1:
        pseudo = [(n, b"") if n == b":path" else (n, v) for n, v in pseudo]
    rng.shuffle(pseudo) if rng.random() < 0.1 else None
    regular = [(rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randrange(4))]
    fields = pseudo + regular
    if rng.random() < 0.1:
        rng.shuffle(fields)  # a pseudo-header after a regular field
    return fields


def test_request_checks_agree_with_h2() -> None:
    rng = random.Random(9113)
    verdicts = {True: 0, False: 0}
    for _ in range(20000):
        fields = random_request(rng)
        want = h2_accepts(fields, FLAGS)
        assert prefork_accepts(fields, h2fields.request_fields) == want, fields
        verdicts[want] += 1
    assert min(verdicts.values()) > 2000  # both verdicts well covered


def test_trailer_checks_agree_with_h2() -> None:
    rng = random.Random(8)
    for _ in range(5000):
        fields = [(rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randrange(1, 4))]
        want = h2_accepts(fields, TRAILER_FLAGS)
        assert prefork_accepts(fields, h2fields.trailer_fields) == want, fields


@pytest.mark.parametrize(
    "fields",
    [
        [*PSEUDO, (b"Host", b"x")],  # RFC 9113 section 8.2.1: no upper case
        [*PSEUDO, (b"x", b"a\x00b")],
        [*PSEUDO, (b"x", b" a")],
        [*PSEUDO, (b"connection", b"close")],  # section 8.2.2
        [*PSEUDO, (b"te", b"gzip")],
        [*PSEUDO, (b"host", b"y")],  # section 8.3.1: :authority and host differ
        [*PSEUDO, (b"host", b"x"), (b"host", b"x")],
        [*PSEUDO, (b":status", b"200")],
        [*PSEUDO[:2], (b"x", b"1"), *PSEUDO[2:]],  # section 8.3: pseudo-headers first
        PSEUDO[1:],  # no :method
        [(b":method", b"CONNECT"), (b":authority", b"x"), (b":path", b"/")],  # section 8.5
        [*PSEUDO, (b":protocol", b"websocket")],  # RFC 8441: only with CONNECT
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"")],
    ],
)
def test_malformed_request_is_refused_with_a_stream_error(fields: list[Any]) -> None:
    pair = Pair()
    pair.to_server()
    block = hpack.Encoder().encode(fields)  # hpack, not the client: it would refuse to send
    frame = HeadersFrame(1, data=block, flags=["END_STREAM", "END_HEADERS"]).serialize()
    events = pair.server.receive_data(frame, 0.0)
    [refused] = [e for e in events if type(e) is proto.Refused]
    assert (refused.stream_id, refused.error_code) == (1, ErrorCodes.PROTOCOL_ERROR)
    out = pair.server.data_to_send()  # RST_STREAM(1, PROTOCOL_ERROR): RFC 9113 section 8.1.1
    assert out == RstStreamFrame(1, error_code=ErrorCodes.PROTOCOL_ERROR).serialize()
    assert not pair.server.closed


def test_request_fields_as_handlers_see_them() -> None:
    headers = h2fields.request_fields(
        [
            HeaderTuple(b":method", b"GET"),
            HeaderTuple(b":scheme", b"https"),
            HeaderTuple(b":path", b"/a?b"),
            HeaderTuple(b"host", b"example.com"),
            NeverIndexedHeaderTuple(b"x-secret", b"s"),
            HeaderTuple(b"cookie", b"a=1"),
            HeaderTuple(b"x-obs", b"caf\xe9"),
        ]
    )
    assert headers == Headers(
        [
            (":authority", "example.com", False),  # from host (RFC 9113 section 8.3.1)
            (":method", "GET", False),
            (":scheme", "https", False),
            (":path", "/a?b", False),
            ("host", "example.com", False),
            ("x-secret", "s", True),
            ("cookie", "a=1", True),
            ("x-obs", "caf\xe9", False),
        ]
    )
