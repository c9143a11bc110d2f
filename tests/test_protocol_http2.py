"""prefork.protocol.http2 and h2frames, sans-I/O: an h2 client and H2Protocol in memory.

The client is h2's own client connection; what it queues is fed to the server side (whole,
or a byte at a time), and the server's answer back, so every exchange is byte-exact and no
socket or clock is involved (the time is a number passed in).
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events as ev
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, GoAwayFrame, HeadersFrame

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
    return [e.stream_id for e in events if isinstance(e, ev.RequestReceived)]


def resets(events: list[Any]) -> list[tuple[int, int]]:
    return [(e.stream_id, e.error_code) for e in events if isinstance(e, ev.StreamReset)]


def goaway_bytes(last: int, code: int = 0, debug: bytes = b"", stream_id: int = 0) -> bytes:
    frame = GoAwayFrame(0, last_stream_id=last, error_code=code, additional_data=debug)
    frame.stream_id = stream_id
    return frame.serialize()


# -- streams past the limit -----------------------------------------------------------------------


def test_stream_past_the_limit_is_refused_and_hpack_stays_in_step() -> None:
    pair = Pair(max_concurrent_streams=2)
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
    [event] = [e for e in events if isinstance(e, ev.RequestReceived)]
    assert (event.stream_id, (b"x-new", b"indexed now") in event.headers) == (7, True)


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
