r"""The request corpus: ``tests/requests/valid/*.http`` and ``tests/requests/invalid/*.http``.

One file is one case, after gunicorn's ``tests/requests``: a header of ``#`` lines, then the
raw request. The raw part is printable ASCII; its real newlines are only for reading and are
dropped, and every byte that is not printable is written as an escape (``\r \n \t \v \f \0
\\ \xHH``)::

    # expect: 400 close
    # RFC 9112 section 6.3 item 3: Content-Length together with Transfer-Encoding.
    POST / HTTP/1.1\r\n
    Host: x\r\n
    Content-Length: 5\r\n
    Transfer-Encoding: chunked\r\n
    \r\n
    0\r\n
    \r\n

Header lines of the form ``# key: value`` with a key below are read; every other ``#`` line
is prose, and one of them must cite the RFC section the case checks ("RFC 9112 section ...").

  - ``expect: STATUS close|keep-alive`` (required). Invalid files: the status the server
    answers with (``RequestParser`` raises ``ProtocolError`` with it), always ``close``.
    Valid files: the test handler's ``200``, and whether the connection persists after it
    (RFC 9112 section 9.3).
  - ``options: name=value ...``: integer server options, which are also ``Limits`` fields.
  - ``body: ESCAPED``: the request body a valid case delivers (default: empty).
  - ``field: NAME=VALUE``: a field of the parsed request's headers (``:path``, ``host``...).
  - ``trailer: NAME=VALUE``: a trailer field a valid case delivers, in order.
  - ``send: eof``: the client half-closes its side after the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
KINDS = ("valid", "invalid")

_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)
_SIMPLE = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"v": b"\v", b"f": b"\f", b"0": b"\0"}
_SIMPLE[b"\\"] = b"\\"
_EXPECT = re.compile(r"([1-5][0-9][0-9]) (close|keep-alive)\Z")
_KEYS = ("expect", "options", "body", "field", "trailer", "send")


@dataclass
class Case:
    """One corpus file, read."""

    name: str
    valid: bool
    status: int
    keep_alive: bool
    raw: bytes
    citation: str
    options: dict[str, int] = field(default_factory=dict)
    body: bytes = b""
    fields: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    eof: bool = False

    @property
    def id(self) -> str:
        return f"{'valid' if self.valid else 'invalid'}/{self.name}"

    @property
    def method(self) -> bytes:
        return self.raw.lstrip(b"\r\n").partition(b" ")[0]


def unescape(text: str) -> bytes:
    """Decode the escapes of the raw part (``\\r``, ``\\x85``...); others are an error."""

    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code[:1] == b"x" and len(code) == 3:
            return bytes([int(code[1:], 16)])
        if code not in _SIMPLE:
            raise ValueError(f"unknown escape \\{code.decode()}")
        return _SIMPLE[code]

    return _ESCAPE.sub(one, text.encode("ascii"))


def load(path: Path) -> Case:
    """Read one case file; raise ``ValueError`` when it does not follow the format."""
    text = path.read_text("ascii")
    lines = text.split("\n")
    head = []
    while lines and lines[0].startswith("#"):
        head.append(lines.pop(0)[1:].strip())
    raw_text = "".join(lines)
    if not raw_text or any(not (" " <= c <= "~") for c in raw_text):
        raise ValueError(f"{path}: the raw part must be printable ASCII with escapes")
    keys: dict[str, list[str]] = {}
    prose = []
    for line in head:
        key, colon, value = line.partition(":")
        if colon and key in _KEYS:
            keys.setdefault(key, []).append(value.strip())
        else:
            prose.append(line)
    citation = " ".join(prose)
    if "RFC " not in citation:
        raise ValueError(f"{path}: no RFC citation")
    match = _EXPECT.match(keys.get("expect", [""])[0])
    if match is None:
        raise ValueError(f"{path}: expect: STATUS close|keep-alive")
    valid = path.parent.name == "valid"
    status, persistence = int(match.group(1)), match.group(2)
    if valid != (status < 400) or (not valid and persistence != "close"):
        raise ValueError(f"{path}: expect {status} {persistence} in {path.parent.name}/")
    case = Case(path.stem, valid, status, persistence == "keep-alive", unescape(raw_text), citation)
    for option in " ".join(keys.get("options", [])).split():
        name, _, value = option.partition("=")
        case.options[name] = int(value)
    case.body = unescape(keys.get("body", [""])[0])
    case.fields = [
        (name, unescape(value).decode("latin-1"))
        for name, value in map(_pair, keys.get("field", []))
    ]
    case.trailers = [
        (name.encode(), unescape(value)) for name, value in map(_pair, keys.get("trailer", []))
    ]
    case.eof = keys.get("send") == ["eof"]
    return case


def _pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals:
        raise ValueError(f"NAME=VALUE expected: {text!r}")
    return name.strip(), value.strip()


def load_all() -> list[Case]:
    """Every case, valid ones first, each kind in file-name order."""
    return [load(path) for kind in KINDS for path in sorted((HERE / kind).glob("*.http"))]
