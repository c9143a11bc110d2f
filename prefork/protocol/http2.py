"""HTTP/2 for a server, sans-I/O: h2's ``H2Connection`` with prefork's settings and defences.

:class:`H2Protocol` is bytes in, events out, like h2 itself: the caller feeds what it read
(:meth:`H2Protocol.receive_data`, with the time, since there is no clock here), handles the
h2 events it gets back, and writes :meth:`H2Protocol.data_to_send`. h2 keeps the protocol
state (streams, HPACK, flow-control windows); this module adds what h2 leaves to servers:

* the local SETTINGS from the server's options (:class:`Settings`);
* a connection window large enough that every stream can fill its own window at once, so
  flow control back-pressures a slow stream and never the connection (RFC 9113 section 5.2);
* streams refused, not the connection ended: a stream past ``max_concurrent_streams`` or
  above the last stream of our GOAWAY gets RST_STREAM(REFUSED_STREAM) and the connection
  lives on (RFC 9113 sections 5.1.2 and 6.8). h2 would end the connection for the first
  and skip decoding its header block; here h2 decodes every block (the HPACK state stays
  in step, RFC 9113 section 4.3) and the streams are refused after;
* the client's GOAWAY read beside h2 (:mod:`prefork.protocol.h2frames`), so that the streams
  open finish (RFC 9113 section 6.8): it arrives as a ``ConnectionTerminated`` event while
  h2 goes on;
* defences, each ending the connection with GOAWAY(ENHANCE_YOUR_CALM) (RFC 9113 section 7):
  a rate budget for RST_STREAM from the client and for streams refused (rapid reset,
  CVE-2023-44487), for PING and for SETTINGS frames (each makes us queue an answer, RFC 9113
  section 10.5), for frames that cost work and carry nothing (PRIORITY and empty DATA:
  CVE-2019-9513, CVE-2019-9518), and a cap on a header block's size across CONTINUATION
  frames (CVE-2024-27316). h2 only decodes a header block at END_HEADERS and buffers up to
  64 CONTINUATION frames until then, up to 1 MiB with 16 KiB frames; the frame scanner stops
  a block at ``max_header_list_size`` bytes. The decoded list is capped by h2 itself (HPACK
  bomb: ``MAX_HEADER_LIST_SIZE``, answered with GOAWAY(ENHANCE_YOUR_CALM)).

A peer that breaks the protocol gets h2's GOAWAY; :meth:`receive_data` then raises
:class:`ConnectionClosed` and the caller flushes and closes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamReset,
    TrailersReceived,
)

from prefork.errors import ProtocolError
from prefork.headers import Headers
from prefork.protocol.h2fields import request_fields, trailer_fields
from prefork.protocol.h2frames import PREFACE, Budget, FrameScanner, goaway_frame
from prefork.protocol.h2setup import SWITCHING, h2c_upgrade, preface_match

__all__ = [
    "MAX_STREAM_ID",
    "PREFACE",
    "SWITCHING",
    "Budget",
    "ConnectionClosed",
    "H2Protocol",
    "Refused",
    "Request",
    "Settings",
    "Trailers",
    "goaway_frame",
    "h2c_upgrade",
    "preface_match",
]

MAX_WINDOW = 2**31 - 1  # RFC 9113 section 6.9.1
MAX_STREAM_ID = 2**31 - 1  # RFC 9113 section 5.1.1

# Defence budgets: (burst, refill per second). Generous for real clients (browsers reset
# streams when a page is left; pings are rare), tight enough that a flood ends quickly.
RESET_BUDGET = (200.0, 100.0)  # RST_STREAM from the client, and streams we refuse
PING_BUDGET = (50.0, 10.0)
SETTINGS_BUDGET = (50.0, 10.0)
JUNK_BUDGET = (500.0, 200.0)  # PRIORITY frames (browsers send a few) and empty DATA frames


@dataclass(frozen=True)
class Settings:
    """The server's local HTTP/2 SETTINGS (RFC 9113 section 6.5.2)."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 65535
    max_frame_size: int = 16384
    max_header_list_size: int = 65536

    @classmethod
    def of(cls, options: Any) -> Settings:
        """The settings a server's ``h2_*`` options ask for."""
        return cls(
            options.h2_max_concurrent_streams,
            options.h2_initial_window_size,
            options.h2_max_frame_size,
            options.h2_max_header_list_size,
        )


class Request:
    """A stream opened with a well-formed request (what h2's ``RequestReceived`` becomes).

    Attributes:
        stream_id: the stream.
        headers: the request's fields, checked (:func:`~prefork.protocol.h2fields.request_fields`).
    """

    __slots__ = ("headers", "stream_id")

    def __init__(self, stream_id: int, headers: Headers) -> None:
        self.stream_id = stream_id
        self.headers = headers


class Trailers(Request):
    """A request's trailers, checked (what h2's ``TrailersReceived`` becomes)."""

    __slots__ = ()


class Refused:
    """A stream we reset (RST_STREAM is queued): malformed, past the limit or after GOAWAY.

    Attributes:
        stream_id: the stream.
        error_code: the RST_STREAM code, ``REFUSED_STREAM`` or ``PROTOCOL_ERROR``.
        reason: why, for a debug log line.
    """

    __slots__ = ("error_code", "reason", "stream_id")

    def __init__(self, stream_id: int, error_code: int, reason: str) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.reason = reason


class ConnectionClosed(Exception):
    """The connection is over: GOAWAY (if any) is queued in ``data_to_send``.

    Attributes:
        error_code: the GOAWAY error code sent (``ErrorCodes``).
    """

    def __init__(self, message: str, error_code: int = ErrorCodes.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.error_code = error_code


class _LocalSettings(h2.settings.Settings):
    """The local SETTINGS, all advertised, but MAX_CONCURRENT_STREAMS not enforced by h2.

    H2Protocol enforces it (``_refuse_excess``): h2 ends the whole connection for a stream
    over the limit, before decoding its header block, where RFC 9113 section 5.1.2 asks for
    a stream error and section 4.3 for the block to be decoded all the same. h2 reads the
    limit only through this property; the SETTINGS frame is built from the mapping.
    """

    @property
    def max_concurrent_streams(self) -> int:
        return 2**32 + 1  # h2's own "no limit"

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = value


class H2Protocol:
    """One server-side HTTP/2 connection: h2 plus settings and defences (module docstring).

    Attributes:
        conn: the ``h2.connection.H2Connection`` (streams, windows, ``send_*`` methods).
        settings: the local :class:`Settings`.
        last_stream_id: the last stream of our GOAWAY (``MAX_STREAM_ID`` before one): the
            streams above it are refused.
    """

    def __init__(self, settings: Settings, upgrade_settings: bytes | None = None) -> None:
        # Fields are checked here, not by h2, both ways: inbound by h2fields (RFC 9113
        # sections 8.2 and 8.3, in the pass that builds the Headers; h2's generators cost
        # more than the rest of a small request), outbound by the stream as for HTTP/1
        # (tokens, control characters, pseudo-headers first, no connection-specific fields).
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = self.conn = h2.connection.H2Connection(config)
        self.settings = settings
        conn.local_settings = _LocalSettings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: settings.max_frame_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,  # RFC 9113 6.5.2: servers must not push
                # RFC 8441 section 3: extended CONNECT (``:protocol``), for WebSocket
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )
        if upgrade_settings is None:
            conn.initiate_connection()
        else:
            # RFC 7540 section 3.2: the request carried HTTP2-Settings and becomes stream 1;
            # the client still sends the preface first (RFC 9113 section 3.4).
            conn.initiate_upgrade_connection(upgrade_settings)
        self._preface = PREFACE
        # RFC 9113 section 6.9.2: the connection window starts at 65535 whatever SETTINGS say;
        # open it so that each stream can fill its own window without starving the others.
        want = min(MAX_WINDOW, settings.initial_window_size * settings.max_concurrent_streams)
        if want > 65535:
            conn.increment_flow_control_window(want - 65535)
        self._scanner = FrameScanner(settings.max_header_list_size, settings.max_frame_size)
        self._resets = Budget(*RESET_BUDGET)
        self._pings = Budget(*PING_BUDGET)
        self._settings_frames = Budget(*SETTINGS_BUDGET)
        self._junk = Budget(*JUNK_BUDGET)
        self.last_stream_id = MAX_STREAM_ID
        self.closed = False

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer (empty when there are none)."""
        return self.conn.data_to_send()

    def receive_data(self, data: bytes, now: float) -> list[Any]:
        """Feed bytes from the peer; returns the events: h2's, but a request as
        :class:`Request`, trailers as :class:`Trailers`, a stream we reset as :class:`Refused`,
        and the client's GOAWAY last, as h2's ``ConnectionTerminated``.

        Raises:
            ConnectionClosed: the peer broke the protocol or a defence limit; GOAWAY is queued.
        """
        if self.closed:
            return []
        if self._preface:
            data = self._check_preface(data)
            if not data:
                return []
        scanner = self._scanner
        fed = scanner.feed(data)
        if fed is None:
            self._calm_down("header block larger than max_header_list_size")
        if scanner.junk:
            junk, scanner.junk = scanner.junk, 0
            if not self._junk.spend(now, junk):
                self._calm_down("PRIORITY or empty frame flood")
        try:
            events = self.conn.receive_data(fed) if fed else []
        except h2.exceptions.ProtocolError as exc:
            self.closed = True  # h2 queued GOAWAY with the error's code
            raise ConnectionClosed(str(exc), int(exc.error_code)) from None
        # the streams h2 holds bound those open: most reads need no count
        opened = self._translate(events, now)
        if opened and len(self.conn.streams) > self.settings.max_concurrent_streams:
            self._refuse_excess(events, now)
        if scanner.goaways:
            events.extend(map(_terminated, scanner.goaways))
            scanner.goaways.clear()
        return events

    def _translate(self, events: list[Any], now: float) -> bool:
        """Check requests and trailers, in place, and spend the budgets; True: streams opened."""
        opened = False
        event: Any
        for i, event in enumerate(events):
            kind = type(event)
            if kind is RequestReceived:
                sid = event.stream_id
                if sid > self.last_stream_id:  # RFC 9113 section 6.8: opened after our GOAWAY
                    events[i] = self._refuse(sid, ErrorCodes.REFUSED_STREAM, "after GOAWAY", now)
                    continue
                try:
                    events[i] = Request(sid, request_fields(event.headers))
                    opened = True
                except ProtocolError as exc:  # RFC 9113 section 8.1.1: a stream error
                    events[i] = self._refuse(sid, ErrorCodes.PROTOCOL_ERROR, str(exc), now)
            elif kind is TrailersReceived:
                sid = event.stream_id
                try:
                    events[i] = Trailers(sid, trailer_fields(event.headers))
                except ProtocolError as exc:
                    events[i] = self._refuse(sid, ErrorCodes.PROTOCOL_ERROR, str(exc), now)
            elif kind is StreamReset:
                if event.remote_reset and not self._resets.spend(now):
                    self._calm_down("too many stream resets (rapid reset)")
            elif kind is PingReceived:
                if not self._pings.spend(now):
                    self._calm_down("PING flood")
            elif kind is RemoteSettingsChanged and not self._settings_frames.spend(now):
                self._calm_down("SETTINGS flood")
        return opened

    def _refuse(self, stream_id: int, code: int, reason: str, now: float) -> Refused:
        """Reset a stream the client opened (or sent trailers on); refusals share the budget
        of the client's own resets: a client that makes us reset streams is flooding too."""
        with contextlib.suppress(h2.exceptions.ProtocolError):  # reset by the client already
            self.conn.reset_stream(stream_id, code)
        if not self._resets.spend(now):
            self._calm_down("too many streams refused")
        return Refused(stream_id, code, reason)

    def _refuse_excess(self, events: list[Any], now: float) -> None:
        """Refuse the newest streams past the limit (RFC 9113 section 5.1.2), in place.

        The streams are counted after the whole read (h2 has handled it all): a client that
        keeps to the limit is never refused, and no more streams than the limit stay open.
        """
        conn = self.conn
        over = conn.open_inbound_streams - self.settings.max_concurrent_streams
        for i in range(len(events) - 1, -1, -1):
            if over <= 0:
                return
            event = events[i]
            if type(event) is Request:
                stream = conn.streams.get(event.stream_id)
                if stream is not None and stream.open:  # (not reset in the same read)
                    over -= 1
                    reason = "past SETTINGS_MAX_CONCURRENT_STREAMS"
                    events[i] = self._refuse(
                        event.stream_id, ErrorCodes.REFUSED_STREAM, reason, now
                    )

    def goaway(self, last_stream_id: int) -> bytes:
        """A GOAWAY(NO_ERROR) naming ``last_stream_id``, to write after ``data_to_send()``.

        The streams up to it go on (RFC 9113 section 6.8), later ones are refused. h2's own
        ``close_connection`` would move its state machine to CLOSED, after which those streams
        could not finish; the frame goes out beside h2 instead. The last stream id never
        grows (RFC 9113 section 6.8: a later GOAWAY must not increase it).
        """
        self.last_stream_id = min(self.last_stream_id, last_stream_id)
        return goaway_frame(self.last_stream_id)

    def _check_preface(self, data: bytes) -> bytes:
        # h2 checks the preface outside its error handling (no GOAWAY): check it here, so that
        # a server pinned to HTTP/2 answers garbage with GOAWAY(PROTOCOL_ERROR) (RFC 9113 3.4).
        want = self._preface
        got = bytes(data[: len(want)])
        if not want.startswith(got):
            self.close(ErrorCodes.PROTOCOL_ERROR)
            raise ConnectionClosed("invalid HTTP/2 preface")
        self._preface = want[len(got) :]
        return data

    def close(self, error_code: int = 0) -> None:
        """Queue GOAWAY (h2's: no stream may continue) and mark the connection closed."""
        if not self.closed:
            self.closed = True
            last = min(self.last_stream_id, self.conn.highest_inbound_stream_id)
            self.conn.close_connection(error_code, last_stream_id=last)

    def _calm_down(self, why: str) -> None:
        self.close(ErrorCodes.ENHANCE_YOUR_CALM)
        raise ConnectionClosed(why, ErrorCodes.ENHANCE_YOUR_CALM)


def _terminated(goaway: tuple[int, int, bytes]) -> ConnectionTerminated:
    """The client's GOAWAY as the event h2 would have made of it."""
    event = ConnectionTerminated()
    last, code, debug = goaway
    try:
        event.error_code = ErrorCodes(code)
    except ValueError:
        event.error_code = code  # RFC 9113 section 7: unknown codes are not errors
    event.last_stream_id = last
    event.additional_data = debug or None
    return event
