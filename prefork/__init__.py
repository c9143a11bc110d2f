"""prefork: a multi-process pre-fork HTTP server with lua-http's ``http.server`` API.

``prefork.server`` is the worker server (``new``, ``listen``, ``Server``); ``prefork.headers``
holds ``Headers``. See docs/ for the references and the architecture.
"""

from prefork.headers import Headers
from prefork.server import Server, listen, new

__all__ = ["Headers", "Server", "__version__", "listen", "new"]
__version__ = "0.1.0"
