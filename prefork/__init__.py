"""prefork: a multi-process pre-fork HTTP server with lua-http's ``http.server`` API.

``prefork.server`` is the worker server (``new``, ``listen``, ``Server``); ``prefork.headers``
holds ``Headers``. See docs/ for the references and the architecture.

``Server``, ``listen`` and ``new`` are imported from ``prefork.server`` when first used, not
with the package: the ``prefork`` command's master imports ``prefork.cli`` and never serves
HTTP itself (docs/architecture.md, "Imports on first need").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefork.headers import Headers

if TYPE_CHECKING:
    from prefork.server import Server, listen, new

__all__ = ["Headers", "Server", "__version__", "listen", "new"]
__version__ = "0.1.0"

_FROM_SERVER = frozenset({"Server", "listen", "new"})


def __getattr__(name: str) -> Any:
    """``prefork.Server``, ``prefork.listen`` and ``prefork.new`` (PEP 562)."""
    if name in _FROM_SERVER:
        from prefork import server

        value = getattr(server, name)
        globals()[name] = value  # found once; later look-ups do not come here
        return value
    raise AttributeError(f"module 'prefork' has no attribute {name!r}")
