"""HTTP/2 frame headers read on the way in, before h2 parses the frames (sans-I/O).

:class:`FrameScanner` walks the 9-byte frame headers of the incoming byte stream (RFC 9113
section 4.1) and skips the payloads. It does what h2 cannot be asked to do:

* it sizes header blocks as they arrive: a HEADERS (or PUSH_PROMISE) frame without
  END_HEADERS and the CONTINUATION frames after it (RFC 9113 section 6.10) are one block,
  which h2 buffers whole before decoding it (CVE-2024-27316);
* it counts the frames that cost work and carry nothing: PRIORITY (CVE-2019-9513) and empty
  DATA frames without END_STREAM (CVE-2019-9518);
* it takes the client's GOAWAY frames out of the stream. h2 closes its whole state machine
  on a received GOAWAY (nothing more can be sent or received), while RFC 9113 section 6.8
  lets the streams already open finish; the server reads the GOAWAY itself instead.

An incomplete frame header at the end of a read (or an incomplete GOAWAY frame) is held
back until its rest arrives, so that a GOAWAY split across reads is never half given to h2.
"""

from __future__ import annotations

__all__ = ["PREFACE", "Budget", "FrameScanner", "goaway_frame"]

from prefork.protocol.sniff import PREFACE  # RFC 9113 section 3.4 (sniffed without h2)

_DATA, _HEADERS, _PRIORITY, _PUSH_PROMISE, _GOAWAY, _CONTINUATION = 0x0, 0x1, 0x2, 0x5, 0x7, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4
_STREAM_ID = 0x7FFFFFFF  # RFC 9113 section 4.1: the reserved bit is ignored


class Budget:
    """A token bucket: ``burst`` events at once, then ``rate`` per second."""

    __slots__ = ("_last", "_rate", "_tokens", "burst")

    def __init__(self, burst: float, rate: float) -> None:
        self.burst = burst
        self._rate = rate
        self._tokens = burst
        self._last = 0.0

    def spend(self, now: float, n: int = 1) -> bool:
        """Take ``n`` tokens at time ``now``; False when the budget is exhausted."""
        tokens = min(self.burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens = tokens - n
        return self._tokens >= 0


def goaway_frame(last_stream_id: int, error_code: int = 0) -> bytes:
    """A serialized GOAWAY frame without debug data (RFC 9113 section 6.8)."""
    payload = (last_stream_id & _STREAM_ID).to_bytes(4, "big") + error_code.to_bytes(4, "big")
    return b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + payload


class FrameScanner:
    """Frame headers of the incoming stream: header-block sizes, junk frames, GOAWAY.

    Attributes:
        limit: the largest header block allowed, in bytes of frame payload.
        max_frame: the largest frame payload allowed (SETTINGS_MAX_FRAME_SIZE); a larger
            GOAWAY is left to h2, which rejects it.
        junk: PRIORITY and empty DATA frames seen since the caller last reset it.
        goaways: ``(last_stream_id, error_code, debug_data)`` of the client's GOAWAY frames
            taken out since the caller last emptied it.
    """

    __slots__ = ("_block", "_held", "_skip", "goaways", "junk", "limit", "max_frame")

    def __init__(self, limit: int, max_frame: int) -> None:
        self.limit = limit
        self.max_frame = max_frame
        self.junk = 0
        self.goaways: list[tuple[int, int, bytes]] = []
        self._skip = len(PREFACE)  # h2 strips the preface; it is no frame
        self._held = b""  # the start of a frame header (or of a GOAWAY) not complete yet
        self._block = -1  # bytes of the open header block, -1: none open

    def feed(self, data: bytes) -> bytes | None:
        """Scan ``data``.

        Returns:
            The bytes to give h2: ``data`` without the client's GOAWAY frames and without an
            incomplete frame header at its end (held for the next call); None when a header
            block grew past ``limit``.
        """
        if self._held:
            data = self._held + data
            self._held = b""
        pos = 0
        end = len(data)
        start = 0  # the first byte not yet given to h2 or taken out
        kept: list[bytes] | None = None  # pieces, once a GOAWAY was taken out
        while True:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
            if pos >= end:
                break
            if end - pos < 9:
                self._held, end = bytes(data[pos:]), pos
                break
            length = int.from_bytes(data[pos : pos + 3], "big")
            kind, flags = data[pos + 3], data[pos + 4]
            if kind == _GOAWAY and self._goaway_ok(data, pos, length):
                if end - pos < 9 + length:
                    self._held, end = bytes(data[pos:]), pos  # the rest is still on its way
                    break
                self._take_goaway(data, pos + 9, length)
                kept = [] if kept is None else kept
                kept.append(data[start:pos])
                pos = start = pos + 9 + length
                continue
            if kind in (_HEADERS, _PUSH_PROMISE, _CONTINUATION):
                self._block = max(self._block, 0) + length
                if self._block > self.limit:
                    return None
                if flags & _END_HEADERS:
                    self._block = -1
            elif kind == _PRIORITY or (not length and kind == _DATA and not flags & _END_STREAM):
                self.junk += 1  # CVE-2019-9513 (PRIORITY), CVE-2019-9518 (empty frames)
            self._skip = length
            pos += 9
        if kept is None:
            return data if end == len(data) else data[:end]
        kept.append(data[start:end])
        return b"".join(kept)

    def _goaway_ok(self, data: bytes, pos: int, length: int) -> bool:
        # Only a well-formed GOAWAY is taken out; h2 answers any other with its connection
        # error: one on a stream (PROTOCOL_ERROR), shorter than 8 bytes or larger than the
        # frame size (FRAME_SIZE_ERROR), or inside a header block (PROTOCOL_ERROR, RFC 9113
        # section 6.10).
        return (
            self._block < 0
            and 8 <= length <= self.max_frame
            and not int.from_bytes(data[pos + 5 : pos + 9], "big") & _STREAM_ID
        )

    def _take_goaway(self, data: bytes, pos: int, length: int) -> None:
        last = int.from_bytes(data[pos : pos + 4], "big") & _STREAM_ID
        code = int.from_bytes(data[pos + 4 : pos + 8], "big")
        self.goaways.append((last, code, bytes(data[pos + 8 : pos + length])))
