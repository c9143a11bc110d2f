"""A raw socket client for the request tests, and the handler it talks to.

:func:`echo` answers every request with 200, its body, and its pseudo-headers and Host as
``x-*`` fields; :class:`Client` reads responses one at a time from a socket and checks that
each is well-formed (status line, field lines, one Content-Length).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any

from tests.conftest import response_headers

ECHOED = (":method", ":path", ":authority", ":scheme", "host")  # sent back as x-method...
STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [\x20-\x7e]*\Z")


async def echo(server: Any, stream: Any) -> None:
    """Answer 200 with the request body, and the request's pseudo-headers and Host as x-*."""
    headers = await stream.get_headers()
    body = await stream.get_body_as_string()
    answer = response_headers("200", content_length=str(len(body)))
    for name in ECHOED:
        value = headers.get(name)
        if value is not None:
            answer.append("x-" + name.lstrip(":"), value)
    await stream.write_headers(answer, False)
    await stream.write_chunk(body, True)


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


class Client:
    """A raw socket client that reads one response at a time (Content-Length framed)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.buf += data
        return bool(data)

    def reply(self, body: bool = True) -> Reply:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"the connection ended before a response: {self.buf[:200]!r}"
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        match = STATUS_LINE.match(status_line)
        assert match, f"bad status line {status_line!r}"
        headers = []
        for line in lines:
            name, colon, value = line.partition(b":")
            assert colon and name.strip() == name, f"bad response field line {line!r}"
            headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
        reply = Reply(int(match.group(1)), headers, b"")
        if not body or reply.status < 200:  # HEAD, 2xx to CONNECT; interim responses
            return reply
        lengths = reply.get("content-length")
        assert len(lengths) == 1, f"responses here are framed by one content-length: {headers}"
        size = int(lengths[0])
        while len(self.buf) < size:
            assert self._fill(), "the connection ended in a response body"
        reply.body, self.buf = self.buf[:size], self.buf[size:]
        return reply

    def rest(self) -> bytes:
        """Everything until the server closes (bounded by the socket's timeout)."""
        while self._fill():
            pass
        rest, self.buf = self.buf, b""
        return rest
