"""What a connection asks of the server that owns it: :class:`ConnectionHost`.

The glue in ``aio/`` never imports ``prefork.server``; each connection is given a host
(``prefork.hosting.Host`` in a ``Server``) and talks to it through this interface only, so
the dependency points one way: the server knows the glue, the glue knows this page.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from prefork.options import ServerOptions
from prefork.protocol.http1 import Limits


class Connection(Protocol):
    """What the host asks of every connection it tracks (HTTP/1, HTTP/2, set-up stages)."""

    def close(self) -> None: ...
    def close_gracefully(self) -> None: ...


class ConnectionHost(Protocol):
    """The server's side of its connections.

    Attributes:
        options: the server's validated options.
        limits: the request limits those options set.
        bind_host: the host name the server listens on (None: not known), for a generated
            TLS certificate.
    """

    options: ServerOptions
    limits: Limits
    bind_host: str | None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the connections run on."""

    def date(self) -> str:
        """The current ``Date`` field value (IMF-fixdate), formatted once per second."""

    def track(self, conn: Connection) -> None:
        """Count a connection that is still being set up (sniff, TLS handshake)."""

    def connection_made(self, conn: Connection) -> None:
        """Count a connection that serves HTTP; a closing server asks it to close gracefully."""

    def untrack(self, conn: Connection) -> None:
        """Stop counting ``conn``: its socket lives on in the next protocol, counted anew."""

    def connection_lost(self, conn: Connection) -> None:
        """The connection's socket is finished with (closed, failed or taken over)."""

    def add_stream(self, stream: Any) -> None:
        """Run the application for a new stream, in a task of its own."""

    def report(self, context: Any, op: str, err: BaseException) -> None:
        """An error of the server (not of a peer): give it to ``onerror``."""
