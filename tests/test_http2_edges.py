"""HTTP/2 edges the load balancers rely on, on real sockets (RFC 9113 sections 5.1.2 and 6.8).

A stream past SETTINGS_MAX_CONCURRENT_STREAMS is refused, not the connection; the streams
open when the client sends GOAWAY finish; a graceful stop is two GOAWAYs around a PING.
h2's client (``Raw`` from test_http2) drives what it can; after a GOAWAY from the server it
accepts no more frames, so the graceful stop is read frame by frame with :class:`Wire`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import h2.events as ev
import hpack
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from prefork.errors import ProtocolError
from prefork.protocol.http2 import PREFACE, goaway_frame
from tests.conftest import Running, response_headers
from tests.helpers import echo, wait_until
from tests.test_http2 import REQUEST, TIMEOUT, goaway, raw, wait_requests

__all__ = ["raw"]  # the fixture, shared with test_http2

MAX_STREAM_ID = 2**31 - 1


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Handlers made by :func:`held` wait for it; set in teardown whatever happened."""
    event = threading.Event()
    yield event
    event.set()


def held(gate: threading.Event) -> Callable[..., Any]:
    """A handler that waits for ``gate``, then answers with its ``x-a`` field (or ``ok``)."""

    async def onstream(server: Any, stream: Any) -> None:
        headers = await stream.get_headers()
        await stream.get_body_as_string()
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, TIMEOUT)
        body = (headers.get("x-a") or "ok").encode()
        await stream.write_headers(response_headers("200", content_length=str(len(body))), False)
        await stream.write_chunk(body, True)

    return onstream


# -- SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 section 5.1.2) -------------------------------------


def test_stream_past_the_limit_is_refused_and_the_connection_lives(serve, raw, gate) -> None:
    running = serve(held(gate), h2_max_concurrent_streams=2)
    client = raw(running)  # it sends before it reads our SETTINGS, as a client may
    first, second = client.get(), client.get()
    conn = client.conn
    third = conn.get_next_available_stream_id()
    conn.send_headers(third, [*REQUEST, ("x-a", "refused")])  # a new HPACK table entry
    client.send_body(third, b"body in flight" * 1000, end=True)  # DATA after the refusal
    client.wait(lambda es: any(isinstance(e, ev.StreamReset) for e in es), "RST_STREAM")
    [reset] = [e for e in client.events if isinstance(e, ev.StreamReset)]
    assert (reset.stream_id, reset.error_code) == (third, ErrorCodes.REFUSED_STREAM)
    gate.set()
    assert client.response(first)[1] == client.response(second)[1] == b"ok"
    # the connection lives on, its HPACK state in step (the refused block was decoded: the
    # client now sends x-a as an index into the dynamic table), its window whole
    fourth = conn.get_next_available_stream_id()
    conn.send_headers(fourth, [*REQUEST, ("x-a", "refused")], end_stream=True)
    client.flush()
    assert client.response(fourth)[1] == b"refused"
    assert goaway(client.events) is None


# -- the client's GOAWAY (RFC 9113 section 6.8) ---------------------------------------------------


def test_client_goaway_lets_the_open_streams_finish(serve, raw) -> None:
    running = serve(echo)
    client = raw(running)
    sid = client.get(end=False)
    # written beside the client's h2, which would stop receiving after its own GOAWAY
    client.sock.sendall(goaway_frame(0))
    client.send_body(sid, b"sent after the GOAWAY", end=True)
    headers, body = client.response(sid)
    assert (headers[":status"], body) == ("200", b"sent after the GOAWAY")
    client.until_closed()  # then our GOAWAY, and the connection closes
    assert (goaway(client.events).error_code, goaway(client.events).last_stream_id) == (0, sid)


def test_client_goaway_on_an_idle_connection_is_answered_and_closed(serve, raw) -> None:
    running = serve(echo)
    client = raw(running)
    client.response(client.get())
    client.sock.sendall(goaway_frame(0))
    client.until_closed()
    assert goaway(client.events).error_code == ErrorCodes.NO_ERROR


def test_client_goaway_with_an_error_closes_at_once(serve, raw, gate) -> None:
    running = serve(held(gate))
    client = raw(running)
    client.get()
    wait_requests(running, 1)
    client.sock.sendall(goaway_frame(0, ErrorCodes.PROTOCOL_ERROR))  # RFC 9113 section 5.4.1
    client.until_closed()
    assert not any(isinstance(e, ev.ResponseReceived) for e in client.events)


# -- our graceful stop: two GOAWAYs around a PING (RFC 9113 section 6.8) --------------------------


class Wire:
    """A client at the frame level (hyperframe and hpack) that reads on after a GOAWAY."""

    def __init__(self, running: Running) -> None:
        self.sock = running.connect(TIMEOUT)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.frames: list[Frame] = []
        self.heads: dict[int, dict[str, str]] = {}  # decoded response heads by stream
        self.closed = False
        self._preface = PREFACE  # sent with the first frames
        self._buffer = b""
        self.send(SettingsFrame(0))

    def send(self, *frames: Frame) -> None:
        data = b"".join(f.serialize() for f in frames)
        self.sock.sendall(self._preface + data)
        self._preface = b""

    def request(self, sid: int) -> None:
        self.send(
            HeadersFrame(sid, self.encoder.encode(REQUEST), flags=["END_HEADERS", "END_STREAM"])
        )

    def of(self, kind: type, sid: int | None = None) -> list[Any]:
        return [f for f in self.frames if type(f) is kind and sid in (None, f.stream_id)]

    def read_until(self, done: Callable[[], Any], what: str) -> None:
        while not done():
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                assert done(), f"connection closed before {what}: {self.frames}"
                return
            self._buffer += data
            self._parse()

    def _parse(self) -> None:
        data = self._buffer
        while len(data) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(data[:9]))
            if len(data) < 9 + length:
                break
            frame.parse_body(memoryview(data[9 : 9 + length]))
            data = data[9 + length :]
            self.frames.append(frame)
            if type(frame) is HeadersFrame:  # every block decoded: HPACK stays in step
                fields = self.decoder.decode(frame.data, raw=False)
                self.heads[frame.stream_id] = dict(fields)
            elif type(frame) is SettingsFrame and "ACK" not in frame.flags:
                self.send(SettingsFrame(0, flags=["ACK"]))
        self._buffer = data


@pytest.fixture
def wire() -> Iterator[Callable[[Running], Wire]]:
    made: list[Wire] = []

    def make(running: Running) -> Wire:
        made.append(Wire(running))
        return made[-1]

    yield make
    for client in made:
        with contextlib.suppress(OSError):
            client.sock.close()


def test_graceful_stop_in_two_steps(serve, wire, gate) -> None:
    running = serve(held(gate))
    client = wire(running)
    client.request(1)
    wait_requests(running, 1)
    running.call(running.server.close)
    client.read_until(lambda: client.of(GoAwayFrame) and client.of(PingFrame), "GOAWAY, PING")
    [first] = client.of(GoAwayFrame)
    assert (first.last_stream_id, first.error_code) == (MAX_STREAM_ID, 0)
    # a request the client sent before it saw the GOAWAY, then the PING's ACK
    [ping] = client.of(PingFrame)
    client.request(3)
    client.send(PingFrame(0, ping.opaque_data, flags=["ACK"]))
    client.read_until(lambda: len(client.of(GoAwayFrame)) == 2, "the second GOAWAY")
    assert (client.of(GoAwayFrame)[1].last_stream_id, client.of(GoAwayFrame)[1].error_code) == (
        3,
        0,
    )
    client.request(5)  # after the last stream: refused, the client may retry it elsewhere
    client.read_until(lambda: client.of(RstStreamFrame, 5), "RST_STREAM")
    assert client.of(RstStreamFrame, 5)[0].error_code == ErrorCodes.REFUSED_STREAM
    gate.set()
    client.read_until(lambda: client.closed, "close")  # the streams taken finish, then close
    assert client.heads[1][":status"] == client.heads[3][":status"] == "200"
    assert [f.data for f in client.of(DataFrame, 1) + client.of(DataFrame, 3)] == [b"ok", b"ok"]
    assert len(client.of(GoAwayFrame)) == 2  # nothing more to say


def test_graceful_stop_without_ping_ack_still_ends(serve, wire) -> None:
    running = serve(echo)
    client = wire(running)
    client.request(1)
    client.read_until(lambda: client.of(DataFrame, 1), "response")
    running.call(running.server.close)
    client.read_until(lambda: client.closed, "close")  # after PING_WAIT, the second GOAWAY
    goaways = [(g.last_stream_id, g.error_code) for g in client.of(GoAwayFrame)]
    assert goaways == [(MAX_STREAM_ID, 0), (1, 0)]


# -- malformed requests and trailers: stream errors (RFC 9113 section 8.1.1) ----------------------


def test_malformed_request_gets_a_stream_error_and_the_connection_lives(
    serve, wire, caplog
) -> None:
    caplog.set_level(logging.DEBUG, logger="prefork.server")
    running = serve(echo)
    client = wire(running)
    bad = [*REQUEST, ("Upper-Case", "x")]  # RFC 9113 section 8.2.1
    client.send(HeadersFrame(1, client.encoder.encode(bad), flags=["END_HEADERS", "END_STREAM"]))
    client.read_until(lambda: client.of(RstStreamFrame, 1), "RST_STREAM")
    assert client.of(RstStreamFrame, 1)[0].error_code == ErrorCodes.PROTOCOL_ERROR
    client.request(3)  # the same connection, HPACK in step
    client.read_until(lambda: client.of(DataFrame, 3), "the next response")
    assert client.heads[3][":status"] == "200" and not client.of(GoAwayFrame)
    assert "stream 1" in caplog.text and "invalid field name" in caplog.text


def test_malformed_trailers_reset_the_stream(serve, wire) -> None:
    seen: list[Any] = []

    async def reader(server: Any, stream: Any) -> None:
        await stream.get_headers()
        try:
            await stream.get_body_as_string()
        except ProtocolError as exc:
            seen.append(exc.status)

    running = serve(reader)
    client = wire(running)
    client.send(HeadersFrame(1, client.encoder.encode(REQUEST), flags=["END_HEADERS"]))
    client.send(DataFrame(1, b"body"))
    trailers = client.encoder.encode([(":path", "/again")])  # no pseudo-header in trailers
    client.send(HeadersFrame(1, trailers, flags=["END_HEADERS", "END_STREAM"]))
    client.read_until(lambda: client.of(RstStreamFrame, 1), "RST_STREAM")
    assert client.of(RstStreamFrame, 1)[0].error_code == ErrorCodes.PROTOCOL_ERROR
    wait_until(lambda: seen, what="the handler's read")
    assert seen == [400]
    client.request(3)
    client.read_until(lambda: client.heads.get(3), "the next response")  # the connection lives


# -- a complete response while the request is still coming (RFC 9113 section 8.1) -----------------


async def answer_at_once(server: Any, stream: Any) -> None:
    """Answer without reading the body: the response ends before the request does."""
    await stream.get_headers()
    await stream.write_headers(response_headers("200", content_length="2"), False)
    await stream.write_chunk(b"ok", True)


def answered_upload(client: Wire, content_length: int | None = None) -> None:
    """Open stream 1 with a POST whose body is still to come; read the whole response."""
    head = [("content-length", str(content_length))] if content_length is not None else []
    fields = [(":method", "POST"), *REQUEST[1:], *head]
    client.send(HeadersFrame(1, client.encoder.encode(fields), flags=["END_HEADERS"]))
    client.read_until(lambda: any("END_STREAM" in f.flags for f in client.of(DataFrame, 1)), "ok")


def error_code(client: Wire) -> int:
    """The code of the stream error (RST_STREAM on 1) or connection error (GOAWAY) we got."""
    client.read_until(lambda: client.of(RstStreamFrame, 1) or client.of(GoAwayFrame), "an error")
    return (client.of(RstStreamFrame, 1) or client.of(GoAwayFrame))[0].error_code


def test_the_rest_of_an_answered_request_is_still_checked(serve, wire) -> None:
    """What the client sends after the response (h2spec's 8.1/1, 8.1.2.6/2 and 6.9.1/3 send
    it without waiting for one) is still read: an error in it is answered as one."""
    running = serve(answer_at_once)
    trailers = wire(running)  # trailers must end the stream (RFC 9113 section 8.1)
    answered_upload(trailers)
    fields = trailers.encoder.encode([("x-test", "ok")])
    trailers.send(DataFrame(1, b"test"), HeadersFrame(1, fields, flags=["END_HEADERS"]))
    assert error_code(trailers) == ErrorCodes.PROTOCOL_ERROR
    length = wire(running)  # content-length against the DATA received (8.1.1)
    answered_upload(length, content_length=8)
    length.send(DataFrame(1, b"test", flags=["END_STREAM"]))
    assert error_code(length) == ErrorCodes.PROTOCOL_ERROR
    window = wire(running)  # a stream window past 2^31-1 (section 6.9.1)
    answered_upload(window)
    window.send(WindowUpdateFrame(1, MAX_STREAM_ID), WindowUpdateFrame(1, MAX_STREAM_ID))
    assert error_code(window) == ErrorCodes.FLOW_CONTROL_ERROR


def test_the_rest_of_an_answered_request_ends_or_is_cut_off(serve, wire) -> None:
    running = serve(answer_at_once)
    short = wire(running)  # a short rest ends the stream: no reset, the connection serves on
    answered_upload(short)
    short.send(DataFrame(1, b"x" * 1000), DataFrame(1, b"", flags=["END_STREAM"]))
    short.request(3)
    short.read_until(lambda: short.of(DataFrame, 3), "the next response")
    assert not short.of(RstStreamFrame) and not short.of(GoAwayFrame)
    long = wire(running)  # past one initial window: RST_STREAM(NO_ERROR), stop sending
    answered_upload(long)
    long.send(*[DataFrame(1, b"x" * 16384) for _ in range(3)])  # within the stream's window
    long.read_until(lambda: long.of(WindowUpdateFrame, 1), "the window given back")
    long.send(*[DataFrame(1, b"x" * 16384) for _ in range(2)])  # 81,920 > 65,535 in all
    long.read_until(lambda: long.of(RstStreamFrame, 1), "RST_STREAM")
    assert long.of(RstStreamFrame, 1)[0].error_code == ErrorCodes.NO_ERROR
    long.request(3)
    long.read_until(lambda: long.of(DataFrame, 3), "the next response")
    assert not long.of(GoAwayFrame)
