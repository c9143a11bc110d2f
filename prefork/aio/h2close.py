"""How an HTTP/2 connection ends: GOAWAY both ways, idle and graceful close (RFC 9113 6.8).

:class:`H2Closing` is the closing half of :class:`~prefork.aio.http2.H2Connection`, kept
apart because it is a state machine of its own:

* **Our graceful stop** (``close_gracefully()``, from ``server.close()``) is the two steps
  of RFC 9113 section 6.8: a GOAWAY(NO_ERROR) naming stream 2^31-1 tells the client to open
  no more streams, and a PING after it measures one round trip; when the PING's ACK comes
  back (or after :data:`PING_WAIT`), every stream the client opened before it saw the
  GOAWAY has arrived, and a second GOAWAY names the last one. The streams up to it finish;
  later ones are refused with RST_STREAM(REFUSED_STREAM) (the client may retry them
  elsewhere); the connection closes after the last.
* **The client's GOAWAY(NO_ERROR)**: the streams it opened finish, then we answer with our
  GOAWAY and close. A GOAWAY with an error code means the client is closing at once
  (RFC 9113 section 5.4.1): nothing we still owe can reach it, so we close too.
* **Idle**: a connection without a stream for ``intra_stream_timeout`` gets GOAWAY(NO_ERROR)
  and is closed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from prefork.protocol.http2 import MAX_STREAM_ID

if TYPE_CHECKING:
    import h2.events as ev
    from h2.connection import H2Connection as H2State

    from prefork.aio.deadline import Deadline
    from prefork.aio.h2stream import H2Stream
    from prefork.protocol.http2 import H2Protocol

PING_WAIT = 1.0  # seconds to wait for the ACK of the shutdown PING before the final GOAWAY
SHUTDOWN_PING = b"prefork\x00"  # the opaque data of that PING (RFC 9113 section 6.7)

# _goaway: how far our own GOAWAY has gone
NO_GOAWAY, FIRST_GOAWAY, FINAL_GOAWAY = 0, 1, 2


class H2Closing:
    """GOAWAY and closing for :class:`~prefork.aio.http2.H2Connection` (a mixin)."""

    # provided by H2Connection
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    h2: H2State
    _proto: H2Protocol
    _options: Any
    _streams: dict[int, H2Stream]
    _deadline: Deadline
    _closed: bool
    _peer_eof: bool
    _closing: bool  # close_gracefully() waits for a first request
    _goaway: int  # NO_GOAWAY, FIRST_GOAWAY, FINAL_GOAWAY
    _goaway_timer: asyncio.TimerHandle | None
    _peer_goaway: bool  # the client sent GOAWAY(NO_ERROR): close once idle

    if TYPE_CHECKING:  # provided by H2Connection, as the attributes above

        def _flush(self) -> None: ...

    def close_gracefully(self) -> None:
        """GOAWAY: open streams finish, new ones are refused; close after the last.

        A connection that has not opened a stream yet was handed to us to be served (a
        retiring worker still serves what the master gave it, as on HTTP/1): it gets a
        short grace (at most 1 s) for its first requests, then the GOAWAY.
        """
        if self._closed or self.transport.is_closing():
            return
        if not self._streams and not self._goaway and not self.h2.highest_inbound_stream_id:
            self._closing = True  # data_received comes back here once streams are open
            self._deadline.arm(min(1.0, self._options.connection_setup_timeout))
            return
        self._closing = False
        if not self._goaway:  # RFC 9113 section 6.8: first the warning, then a round trip
            self._goaway = FIRST_GOAWAY
            self._flush()
            self.transport.write(self._proto.goaway(MAX_STREAM_ID))
            self.h2.ping(SHUTDOWN_PING)
            self._flush()
            self._goaway_timer = self.loop.call_later(PING_WAIT, self._final_goaway)
        self._check_idle()

    def _final_goaway(self) -> None:
        """The round trip is over: the streams the client opened so far are all we take."""
        if self._goaway_timer is not None:
            self._goaway_timer.cancel()
            self._goaway_timer = None
        if self._goaway != FIRST_GOAWAY or self._closed or self.transport.is_closing():
            return
        self._goaway = FINAL_GOAWAY
        self._flush()
        self.transport.write(self._proto.goaway(self.h2.highest_inbound_stream_id))
        self._check_idle()

    def _on_ping_ack(self, event: ev.PingAckReceived) -> None:
        if event.ping_data == SHUTDOWN_PING:
            self._final_goaway()

    def _on_goaway(self, event: ev.ConnectionTerminated) -> None:
        if event.error_code != ErrorCodes.NO_ERROR:
            self.close()  # the client is closing on an error: what we owe cannot reach it
            return
        self._peer_goaway = True
        last = event.last_stream_id or 0
        for sid, stream in list(self._streams.items()):
            if not sid % 2 and sid > last:  # a pushed stream the client will ignore
                del self._streams[sid]
                stream._lost()
        self._check_idle()

    def _check_idle(self) -> None:
        if self._streams or self._closed:
            return
        if self._goaway == FINAL_GOAWAY or self._peer_eof:
            self.close()
        elif self._peer_goaway:
            self._timed_out()  # answer the client's GOAWAY with ours, then close
        elif not self._goaway:  # after the first GOAWAY the PING's ACK (or timer) decides
            self._deadline.arm(self._options.intra_stream_timeout)

    def close(self) -> None:
        """Close the connection now (buffered output is still flushed)."""
        if not self._closed:
            self._flush()
            self.transport.close()

    def _timed_out(self) -> None:
        if self._closed or self._streams:
            return
        self._proto.close(ErrorCodes.NO_ERROR)  # idle: GOAWAY, then close (RFC 9113 6.8)
        self.close()
