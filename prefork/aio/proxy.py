"""The PROXY protocol on asyncio: the set-up stage that reads a balancer's header first.

On a listener configured for it (docs/scale-out.md, "PROXY protocol"), every connection starts
with a PROXY protocol header (:mod:`prefork.protocol.proxy`) and :class:`ProxyHeaderProtocol`
serves it before anything else: before the TLS sniff or handshake (a balancer in TCP mode
passes TLS through), before the HTTP/2 preface. It

* refuses at once a socket whose peer is not in ``forwarded_allow_ips``: the header would let
  anyone who can connect name any client (spec section 5);
* reads the header within the connection's set-up deadline (``connection_setup_timeout``),
  which the stages after it share (sniff, handshake);
* then hands the socket and the bytes after the header to the next stage, with the header
  (None for a ``LOCAL`` one, a health check: the socket's own addresses stand), which the
  HTTP connection keeps as its ``proxy`` for every request it carries.

A missing, malformed, truncated or slow header closes the connection without a word (there is
no protocol yet in which to say one) and is logged at debug: a bad header is the balancer's
misconfiguration or a stranger's probe, not an error of the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prefork.aio.common import transport_name
from prefork.aio.host import ConnectionHost
from prefork.aio.setupphase import SetupProtocol
from prefork.protocol import proxy
from prefork.protocol.proxy import ProxyHeader

log = logging.getLogger("prefork.server")

#: Makes the protocol that serves the socket after the header, given the header (None: a
#: ``LOCAL`` one) and the set-up deadline.
NextStage = Callable[[ProxyHeader | None, float | None], asyncio.Protocol]


class ProxyHeaderProtocol(SetupProtocol):
    """Read the PROXY header, then hand over to ``next_stage`` (see the module docstring)."""

    def __init__(self, host: ConnectionHost, next_stage: NextStage) -> None:
        super().__init__(host)
        self._next = next_stage
        self._buffer = bytearray()  # a header that came in pieces
        self._failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else None  # None: a Unix socket's peer
        if address not in self.host.options.forwarded_allow_ips:
            self._refuse("it is not in forwarded_allow_ips")

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return
        buffer: bytes | bytearray = data
        if self._buffer:
            self._buffer += data  # in place: a header in many pieces costs linear time
            buffer = self._buffer
        try:
            found = proxy.parse(buffer)
        except proxy.ProxyHeaderError as exc:
            self._refuse(f"bad PROXY protocol header: {exc}")
            return
        if found is None:
            if buffer is data:
                self._buffer += data  # at most 65,551 bytes, within the set-up deadline
            return
        header, length = found
        self._buffer = bytearray()
        relayed = None if header.command == "LOCAL" else header
        self.hand_over(self._next(relayed, self.deadline), bytes(buffer[length:]))

    def eof_received(self) -> bool:
        self._refuse("closed before a complete PROXY protocol header")
        return False

    def _expired(self) -> None:
        self._timer = None
        self._refuse("no complete PROXY protocol header within connection_setup_timeout")

    def _refuse(self, why: str) -> None:
        if not self._failed:
            self._failed = True
            peer = transport_name(self.transport, "peername")
            log.debug("connection from %s closed: %s", _show(peer), why)
            self.transport.abort()


def _show(name: tuple) -> str:
    if len(name) == 3:
        return f"[{name[1]}]:{name[2]}" if ":" in name[1] else f"{name[1]}:{name[2]}"
    return "a Unix socket" if len(name) == 2 else "an unknown peer"
