"""Master <-> worker messages.

Two channels per worker::

    master                                         worker
      |== channel: SOCK_SEQPACKET socketpair ========|   one message = one datagram
      |   down:  BATCH  'B' u32 batch_id [u8 mark per fd] + SCM_RIGHTS fds (the connections)
      |   up:    READY  'R'                       worker's server is up, send work
      |          ACK    'A' u32 closed u32 batch_id...  batches taken: master closes its
      |                                           copies; and ``closed`` connections finished
      |          REFUSE 'N' u32 batch_id          batch not taken (closing, at --max-concurrent,
      |                                           or at the fd limit): master hands it out again
      |          CLOSED 'C' u32 count             that many connections finished
      |          BEAT   'H' u64 requests u32 open heartbeat from the event loop, with stats
      |          ERROR  'E' utf-8 text            boot failed (e.g. the app cannot import)
      |   down:  CMD    'K' command name          a control command, for attached workers
      |
      |-- control: pipe, master -> worker ------------>|   one command per line
          pause | resume | close | reopen-logs          EOF: the master is gone
          drain | undrain                               the health path: 503 / 200 again

The worker reports once per loop iteration: the batches it took in that iteration, with the
count of connections finished since its last report, go in one ACK (a CLOSED alone when it took
none), so that a busy master gets one message, not one per batch and one per close.

Integers are big-endian. SEQPACKET keeps message boundaries and delivers the fds with their
message, so nothing here parses a byte stream; the control pipe is a byte stream of lines.
Each batch is answered once, by ACK or REFUSE. Only BATCH carries fds: fds that come with any
other message, or with one that does not decode, are closed by the receiver.

A BATCH's marks say what the master knows of each connection from the listener that accepted
it, one byte per fd in the fds' order: ``PROXIED`` (0x01) is a connection that starts with a
PROXY protocol header (docs/scale-out.md). Without marks (the message ends after the batch id,
as when no listener expects a PROXY header) every byte is 0. Marks that are neither absent nor
one per fd make the message malformed: the worker closes its fds and logs it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

BATCH = b"B"
READY = b"R"
ACK = b"A"
REFUSE = b"N"
CLOSED = b"C"
BEAT = b"H"
ERROR = b"E"
CMD = b"K"

COMMANDS = ("pause", "resume", "close", "reopen-logs", "drain", "undrain")

PROXIED = 0x01  # a BATCH mark: the connection starts with a PROXY protocol header

_U32 = struct.Struct(">I")
_BEAT = struct.Struct(">QI")


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded upward (or BATCH) message: ``kind`` and its fields."""

    kind: bytes
    number: int = 0
    requests: int = 0
    text: str = ""
    marks: bytes = b""
    batches: tuple[int, ...] = ()  # ACK: the batch ids taken (``number``: the closed count)


def batch(batch_id: int, marks: bytes = b"") -> bytes:
    """A batch; ``marks``: one byte per fd it carries (``PROXIED``), or none when all are 0."""
    return BATCH + _U32.pack(batch_id) + marks


MAX_ACKS = 512  # batch ids in one ACK: 2 KiB, well within the master's 4 KiB read


def ack(batch_ids: list[int] | tuple[int, ...], closed: int = 0) -> bytes:
    """The batches taken (one to ``MAX_ACKS``), and ``closed`` connections finished."""
    if not 0 < len(batch_ids) <= MAX_ACKS:
        raise ValueError(f"an ACK carries 1 to {MAX_ACKS} batch ids, got {len(batch_ids)}")
    return ACK + struct.pack(f">{len(batch_ids) + 1}I", closed, *batch_ids)


def refuse(batch_id: int) -> bytes:
    """The worker did not take the batch: the master keeps its copies and hands them out again."""
    return REFUSE + _U32.pack(batch_id)


def closed(count: int) -> bytes:
    return CLOSED + _U32.pack(count)


def beat(requests: int, open_connections: int) -> bytes:
    return BEAT + _BEAT.pack(requests, open_connections)


def error(text: str) -> bytes:
    return ERROR + text.encode("utf-8", "replace")[:4000]


def control(name: str) -> bytes:
    """A control command as a channel message (attached workers have no control pipe)."""
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}")
    return CMD + name.encode("ascii")


def decode(data: bytes) -> Message:
    """Decode one channel message.

    Raises:
        ValueError: unknown kind or wrong length (a protocol bug; the sender is killed).
    """
    kind = data[:1]
    body = data[1:]
    try:
        if kind == BATCH:
            return Message(kind, _U32.unpack_from(body)[0], marks=body[4:])
        if kind == ACK and len(body) >= 8 and len(body) % 4 == 0:
            closed, *batches = struct.unpack(f">{len(body) // 4}I", body)
            return Message(kind, closed, batches=tuple(batches))
        if kind in (REFUSE, CLOSED):
            return Message(kind, _U32.unpack(body)[0])
        if kind == BEAT:
            requests, open_connections = _BEAT.unpack(body)
            return Message(kind, open_connections, requests)
        if kind == READY and not body:
            return Message(kind)
        if kind == ERROR:
            return Message(kind, text=body.decode("utf-8", "replace"))
        if kind == CMD and body.decode("ascii", "replace") in COMMANDS:
            return Message(kind, text=body.decode("ascii"))
    except struct.error:
        pass
    raise ValueError(f"bad channel message {data[:16]!r}")


def command(name: str) -> bytes:
    """Encode a control-pipe command line."""
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}")
    return name.encode("ascii") + b"\n"


def split_commands(buffer: bytes) -> tuple[list[str], bytes]:
    """Split complete lines off ``buffer``: ``(commands, rest)``; unknown lines are dropped."""
    *lines, rest = buffer.split(b"\n")
    names = [line.decode("ascii", "replace") for line in lines]
    return [n for n in names if n in COMMANDS], rest
