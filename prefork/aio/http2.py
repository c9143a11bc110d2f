"""One HTTP/2 connection on asyncio: bytes between the socket and :class:`H2Protocol`.

Received bytes go to the sans-I/O :class:`~prefork.protocol.http2.H2Protocol`; each request
becomes an :class:`~prefork.aio.h2stream.H2Stream` whose ``onstream`` runs in a task of its
own; what h2 queues is written once per loop iteration. One deadline: set-up until the first
bytes, ``intra_stream_timeout`` while no stream is open. Flow control (RFC 9113 section 5.2):
a body returns to the client's window as its handler reads it, the connection window is
opened wide at start. GOAWAY both ways and closing are :mod:`prefork.aio.h2close`.
:func:`upgrade_h2c` turns an HTTP/1.1 ``Upgrade: h2c`` request into stream 1 of a new
connection (RFC 7540 section 3.2). docs/http2.md has more.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import h2.events as ev
import h2.exceptions
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from prefork.aio.common import TAKEN, Endpoints
from prefork.aio.deadline import Deadline
from prefork.aio.h2close import NO_GOAWAY, H2Closing
from prefork.aio.h2send import H2Sending
from prefork.aio.h2stream import H2Stream
from prefork.aio.host import ConnectionHost
from prefork.headers import Headers
from prefork.protocol import http2 as proto
from prefork.protocol.proxy import ProxyHeader

log = logging.getLogger("prefork.server")

if TYPE_CHECKING:  # the h2c switch takes an HTTP/1 connection over (http1 imports us)
    from prefork.aio.http1 import H1Connection
    from prefork.protocol.http1 import RequestInfo


class H2Connection(H2Closing, Endpoints, asyncio.Protocol):
    """An HTTP/2 server connection (the stream's ``connection`` attribute).

    Attributes:
        version: 2, the HTTP version this side speaks.
        max_body_size: the request body limit of its streams (None: no limit).
        proxy: the PROXY protocol header it began with, if any (see ``Endpoints``).
    """

    version = 2

    def __init__(
        self,
        host: ConnectionHost,
        tls: Any = None,
        *,
        fresh: bool = False,
        upgrade: tuple[bytes, Headers] | None = None,
        proxy: ProxyHeader | None = None,
    ) -> None:
        self.host = host
        self.proxy = proxy
        self.loop = host.loop
        self._options = host.options
        self.max_body_size = host.limits.max_body_size
        self.tls = tls
        self.scheme = "http" if tls is None else "https"
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._proto = proto.H2Protocol(
            proto.Settings.of(host.options), upgrade[0] if upgrade else None
        )
        self.h2 = self._proto.conn
        self._upgrade = upgrade
        self._fresh = fresh  # nothing received yet: the set-up deadline applies
        self._streams: dict[int, H2Stream] = {}
        self._discarding: dict[int, int] = {}  # answered, request still coming: bytes allowed
        self._windows: dict[int, asyncio.Future[None]] = {}
        self._closed = False
        self._peer_eof = False
        self._goaway = NO_GOAWAY
        self._goaway_timer: asyncio.TimerHandle | None = None
        self._peer_goaway = False
        self._closing = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._write_deadline: Deadline | None = None  # made the first time writing pauses
        self._flush_handle: asyncio.Handle | None = None
        self._deadline = Deadline(self.loop, self._timed_out)

    @property
    def max_buffered_body(self) -> int:  # for the streams' whole-body reads
        return self._options.max_buffered_body

    def __repr__(self) -> str:
        return f"<prefork.H2Connection peer={self.peername()!r} streams={len(self._streams)}>"

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        opts = self._options
        self._deadline.arm(
            opts.connection_setup_timeout if self._fresh else opts.intra_stream_timeout
        )
        if self._upgrade is not None:  # RFC 7540 section 3.2: the request is stream 1
            self._open_stream(1, self._upgrade[1], body_done=True)
        self._flush()
        # last: a server already closing calls close_gracefully() at once
        self.host.connection_made(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self._fresh:
            self._fresh = False
            if not self._streams:
                self._deadline.arm(self._options.intra_stream_timeout)
        try:
            events = self._proto.receive_data(data, self.loop.time())
        except proto.ConnectionClosed as exc:
            log.debug("HTTP/2 connection error from %s: %s", self.peername(), exc)
            self._flush()  # the GOAWAY h2 or the defences queued
            self.transport.close()
            return
        try:
            for event in events:
                handler = _HANDLERS.get(type(event))
                if handler is not None:
                    handler(self, event)
        except Exception as exc:  # a bug of ours: drop this connection, report, keep serving
            self.transport.abort()
            self.host.report(self, "get_next_incoming_stream", exc)
            return
        if self._closing and self._streams:
            self.close_gracefully()  # the grace is over: the requests that came are served
        self._flush()

    def eof_received(self) -> bool:
        if not self._streams:
            return False  # nothing owed: the transport closes
        self._peer_eof = True  # responses still owed go out; then close
        for stream in self._streams.values():
            if not stream._body_done:
                stream._lost()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._deadline.cancel()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._goaway_timer is not None:
            self._goaway_timer.cancel()
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream._lost()
        self._wake_windows(None)
        self._wake_writers()
        self.host.connection_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        # write_timeout: a client that reads nothing while our buffer is full is cut off
        if self._write_deadline is None:
            # the client read nothing while responses waited: gone in all but name; abort
            # (connection_lost wakes every writer with BrokenPipeError)
            self._write_deadline = Deadline(self.loop, self.transport.abort)
        self._write_deadline.arm(self._options.write_timeout)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._write_deadline is not None:
            self._write_deadline.clear()
        self._wake_writers()

    # -- h2 events ---------------------------------------------------------------------------

    def _open_stream(self, stream_id: int, headers: Headers, body_done: bool = False) -> None:
        stream = H2Stream(self, stream_id, headers, body_done)
        self._streams[stream_id] = stream
        self._deadline.clear()  # the handler's time is its own
        self.host.add_stream(stream)

    def _on_request(self, event: proto.Request) -> None:
        self._open_stream(event.stream_id, event.headers)

    def _on_refused(self, event: proto.Refused) -> None:
        # malformed (a stream error, RFC 9113 section 8.1.1), past the limit or after GOAWAY
        log.debug(
            "HTTP/2 stream %d from %s reset: %s", event.stream_id, self.peername(), event.reason
        )
        self._discarding.pop(event.stream_id, None)
        stream = self._streams.pop(event.stream_id, None)
        if stream is not None:  # malformed trailers: a read raises, no answer can go out
            stream._malformed(event.reason)
            self._wake_windows(event.stream_id)
            self._check_idle()

    def _on_data(self, event: ev.DataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None or stream._response_done:
            # nobody will read it: give the window back at once
            self._ack(event.stream_id, event.flow_controlled_length)
            left = self._discarding.get(event.stream_id)
            if left is not None:
                self._discarded(event.stream_id, left - event.flow_controlled_length)
        else:
            stream._feed(event.data, event.flow_controlled_length)

    def _on_trailers(self, event: proto.Trailers) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream._feed_trailers(event.headers)

    def _on_end(self, event: ev.StreamEnded) -> None:
        self._discarding.pop(event.stream_id, None)
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream._feed_end()

    def _on_reset(self, event: ev.StreamReset) -> None:
        self._discarding.pop(event.stream_id, None)
        stream = self._streams.pop(event.stream_id, None)
        if stream is not None:
            stream._reset_by_peer(int(event.error_code))
            self._wake_windows(event.stream_id)
            self._check_idle()

    def _on_window(self, event: ev.WindowUpdated) -> None:
        self._wake_windows(event.stream_id or None)

    def _on_settings(self, event: ev.RemoteSettingsChanged) -> None:
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._wake_windows(None)  # RFC 9113 section 6.9.2: every stream window moved

    # -- for streams ---------------------------------------------------------------------------

    def _check(self, stream: H2Sending) -> None:
        if stream._reset or self._closed or self.transport.is_closing():
            raise BrokenPipeError("stream reset" if stream._reset else "connection closed")

    def _h2_error(self, exc: Exception) -> Exception:
        if isinstance(exc, h2.exceptions.StreamClosedError) or (
            self.h2.state_machine.state is ConnectionState.CLOSED
        ):
            return BrokenPipeError(str(exc))
        return ValueError(str(exc))

    def _send_headers(self, stream: H2Stream, fields: list[Any], end_stream: bool) -> None:
        self._check(stream)
        try:
            self.h2.send_headers(stream.stream_id, fields, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            raise self._h2_error(exc) from None
        self._flush_soon()

    def _wake_windows(self, stream_id: int | None) -> None:
        windows = self._windows
        for sid in list(windows) if stream_id is None else [stream_id]:
            waiter = windows.get(sid)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _ack(self, stream_id: int, size: int) -> None:
        """Return ``size`` bytes of window: the handler consumed them (RFC 9113 6.9)."""
        if self._closed:
            return
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except h2.exceptions.ProtocolError:
            return  # the stream or the connection is over: no window to return
        self._flush_soon()

    def _reset_stream(self, stream: H2Stream, code: int) -> None:
        stream._reset = True
        self._wake_windows(stream.stream_id)
        self._reset_id(stream.stream_id, code)

    def _reset_id(self, stream_id: int, code: int) -> None:
        self._discarding.pop(stream_id, None)
        if self._closed:
            return
        try:
            self.h2.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            return  # already closed on both sides
        self._flush_soon()

    def _discard_rest(self, stream_id: int) -> None:
        """The response is complete while the request is still coming (RFC 9113 section 8.1).
        Up to one initial window of it is read and dropped, so that what the client already
        sent is still checked (trailers, content-length, flow control: a stream error answers
        a bad one); past that, RST_STREAM(NO_ERROR) asks the client to stop sending."""
        self._discarding[stream_id] = self._options.h2_initial_window_size

    def _discarded(self, stream_id: int, left: int) -> None:
        if left < 0:
            self._reset_id(stream_id, ErrorCodes.NO_ERROR)
        else:
            self._discarding[stream_id] = left

    def _stream_done(self, stream: H2Stream) -> None:
        self._streams.pop(stream.stream_id, None)
        self._check_idle()

    # -- writing ---------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_handle = None
        data = self.h2.data_to_send()
        if data and not self._closed:
            self.transport.write(data)

    def _flush_soon(self) -> None:
        # Frames queued in one loop iteration (a head and its body) leave in one write.
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    async def _wait_writable(self, timeout: float | None) -> None:
        while self._write_paused and not self._closed:
            if self._drain is None:
                self._drain = self.loop.create_future()
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._drain)
        if self._closed or self.transport.is_closing():
            raise BrokenPipeError("connection closed")

    def _wake_writers(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- lua-http connection methods -------------------------------------------------------------

    async def take_socket(self) -> Any:
        """Not possible: the connection carries other streams (RFC 9113 section 5)."""
        raise ValueError("an HTTP/2 connection cannot be taken over")


_HANDLERS: dict[type, Any] = {
    proto.Request: H2Connection._on_request,
    proto.Refused: H2Connection._on_refused,
    ev.DataReceived: H2Connection._on_data,
    proto.Trailers: H2Connection._on_trailers,
    ev.StreamEnded: H2Connection._on_end,
    ev.StreamReset: H2Connection._on_reset,
    ev.WindowUpdated: H2Connection._on_window,
    ev.RemoteSettingsChanged: H2Connection._on_settings,
    ev.ConnectionTerminated: H2Connection._on_goaway,
    ev.PingAckReceived: H2Connection._on_ping_ack,
}


def upgrade_h2c(h1: H1Connection, info: RequestInfo) -> bool:
    """Switch ``h1`` to HTTP/2 for an ``Upgrade: h2c`` request (RFC 7540 section 3.2).

    Which requests qualify is :func:`~prefork.protocol.http2.h2c_upgrade`'s decision; only a
    plain connection of a server that allows HTTP/2 (``version`` None) is considered.

    Returns:
        True when the connection now speaks HTTP/2 and the request is its stream 1.
    """
    if h1.tls is not None or h1.host.options.version is not None:
        return False
    upgrade = proto.h2c_upgrade(info.headers, info.version)
    if upgrade is None:
        return False
    transport = h1.transport
    h1._state = TAKEN  # its timer and callbacks stand down
    data = h1._parser.take_trailing_data()
    transport.write(proto.SWITCHING)
    conn = H2Connection(h1.host, upgrade=upgrade, proxy=h1.proxy)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    h1.host.untrack(h1)
    transport.resume_reading()
    if data:
        conn.data_received(data)
    return True
