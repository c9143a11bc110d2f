"""Coverage-guided fuzzing of the HTTP/1 request parser with atheris, for long runs.

tests/test_fuzz.py checks the invariant below in CI, bounded and derandomized, with
hypothesis; this runs it under libFuzzer for as long as you like. atheris is in no extra::

    .venv/bin/pip install atheris
    .venv/bin/python -m tools.fuzz_http1 --write-seeds /tmp/h1-seeds
    .venv/bin/python -m tools.fuzz_http1 /tmp/h1-corpus /tmp/h1-seeds -max_total_time=3600

Run it from the repository root. Every argument but ``--write-seeds`` goes to libFuzzer: the
first directory is the corpus it grows, the next ones seeds (``--write-seeds`` writes
tests/requests/*.http there); ``-max_total_time``, ``-runs``, ``-jobs`` and the rest as usual.
A failing input is saved as ``crash-<sha1>``; replay it with
``.venv/bin/python -m tools.fuzz_http1 crash-<sha1>``.

An input is one byte saying how the rest arrives (0: in one piece; n: in pieces of n bytes),
then the bytes a client sends on one connection, followed by EOF. The invariant
(:func:`outcome`): ``RequestParser`` yields a valid event stream (Request, Data...,
EndOfMessage, PAUSED for each request; a Content-Length body of that length) or raises
``ProtocolError`` with a status it documents; nothing else escapes it; the outcome does
not depend on the segmentation (:func:`agree`), nor on the field-line splitter (``h11`` or
``httptools``, when it is installed: the ``http`` option).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefork.errors import ProtocolError
from prefork.protocol import http1
from prefork.protocol.http1 import Limits, RequestParser, Splitter, splitter

ERROR_STATUSES = {400, 413, 414, 431, 501, 505}  # what RequestParser raises with
# Faults found while a head (or trailer section) arrives: with several in one input, the one
# reported is the first the bytes received so far show (a bare LF found at once in the whole
# input, or the line limit passed before that LF arrives byte by byte). Both are refusals.
SCAN_FAULTS = {400, 414, 431}
# small enough for short inputs to reach 413, 414 and 431 too
LIMITS = Limits(max_request_line=200, max_header_count=4, max_head_size=300, max_body_size=64)


@dataclass
class Outcome:
    """What the parser made of some bytes followed by EOF."""

    requests: list[tuple[Any, ...]]  # complete: method, target, fields, body, trailers, keep-alive
    status: int | None = None  # the ProtocolError's, None when the input ended cleanly
    in_body: bool = False  # the error came after a request head was accepted
    at_eof: bool = False  # the error came with EOF (the input was cut short)


def outcome(pieces: list[bytes], limits: Limits = LIMITS, split: Splitter | None = None) -> Outcome:
    """Feed ``pieces`` then EOF to a ``RequestParser`` (with ``split``, by default the
    pure-Python splitter), checking the event stream on the way.

    Raises:
        AssertionError: an invariant broke (any other exception escaped the parser).
    """
    parser = RequestParser(limits, "http", split or splitter("h11"))
    result = Outcome([])
    current: list[Any] | None = None
    length: int | None = None
    try:
        for piece in [*pieces, b""]:
            result.at_eof = not piece
            parser.receive_data(piece)
            while (event := parser.next_event()) is not http1.NEED_DATA:
                if isinstance(event, http1.Request):
                    assert current is None, "a request inside a request"
                    fields = event.headers.items()
                    current = [event.method, event.target, fields, b"", None, event.keep_alive]
                    cl = event.headers.get("content-length")
                    length = int(cl) if cl is not None else None
                elif isinstance(event, http1.Data):
                    assert current is not None and current[4] is None, "data outside a body"
                    current[3] += bytes(event.data)
                elif isinstance(event, http1.EndOfMessage):
                    assert current is not None and current[4] is None, "a second end"
                    assert length is None or len(current[3]) == length, "body != Content-Length"
                    current[4] = event.headers
                elif event is http1.PAUSED:
                    assert current is not None and current[4] is not None, "paused mid-request"
                    result.requests.append(tuple(current))
                    current = None
                    parser.start_next_cycle()
                else:
                    assert isinstance(event, http1.ConnectionClosed), event
                    assert current is None, "closed mid-request without an error"
                    return result
    except ProtocolError as exc:
        assert exc.status in ERROR_STATUSES, exc.status
        result.status, result.in_body = exc.status, current is not None
        return result
    raise AssertionError("EOF left the parser waiting for data")


def agree(one: Outcome, other: Outcome) -> bool:
    """Whether two outcomes of the same bytes, segmented differently, agree (SCAN_FAULTS)."""
    if one.status in SCAN_FAULTS and other.status in SCAN_FAULTS:
        one = dataclasses.replace(one, status=other.status)
    return one == other


def fast_splitter() -> Splitter | None:
    """The httptools splitter, None when httptools is not installed."""
    try:
        return splitter("httptools")
    except ImportError:
        return None


FAST = fast_splitter()


def check(data: bytes) -> None:
    """The libFuzzer target: ``data[0]`` is the segment size (0: one piece), the rest a stream."""
    if not data:
        return
    step, stream = data[0], data[1:]
    pieces = [stream[i : i + step] for i in range(0, len(stream), step)] if step else [stream]
    assert agree(outcome(pieces), outcome([stream])), "the outcome depends on the segmentation"
    if FAST is not None:
        assert outcome(pieces, split=FAST) == outcome(pieces), "the splitters disagree"


def write_seeds(directory: Path) -> int:
    """Write every request of tests/requests as a seed, whole and byte by byte."""
    from tests.requests.corpus import load_all  # the repository root is on sys.path (-m)

    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for case in load_all():
        for step in (0, 1):
            seed = bytes([step]) + case.raw
            (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
            count += 1
    return count


def main(argv: list[str] | None = None) -> None:
    args = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write-seeds", type=Path, help="write the seed corpus here and exit")
    known, rest = parser.parse_known_args(args[1:])
    if known.write_seeds is not None:
        print(f"{write_seeds(known.write_seeds)} seeds in {known.write_seeds}")
        return
    import atheris  # not a dependency: pip install atheris

    atheris.instrument_all()  # prefork (and httptools) are loaded: trace their code for coverage
    atheris.Setup([args[0], *rest], check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
