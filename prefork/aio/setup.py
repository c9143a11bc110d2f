"""Connection set-up: which protocol object serves a newly added socket.

The seed's ``tls`` option decides: False serves plaintext HTTP/1 at once. TLS (``tls`` True,
and the TLS/plaintext sniff of ``tls`` None) is to be built here (issue #3); until then a server
with ``tls=True`` is refused when it is made, and ``tls=None`` serves plaintext.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from prefork.aio.http1 import H1Connection

if TYPE_CHECKING:
    from prefork.server import Server


def connection_factory(server: Server) -> Callable[[], asyncio.Protocol]:
    """The protocol factory for ``loop.connect_accepted_socket`` on ``server``'s sockets.

    Raises:
        ValueError: the options ask for something this build cannot serve (``tls=True``).
    """
    if server._options.tls:
        raise ValueError(
            "option 'tls': TLS is not built into this version of prefork yet "
            "(use tls=False or None)"
        )
    return lambda: H1Connection(server)
