"""ASGI 3 applications on prefork: ``onstream(app)`` serves one, ``Lifespan`` starts and stops it.

``onstream(app, ...)`` returns an ``async def onstream(server, stream)``, so an ASGI application
runs wherever a stream handler does: under the ``prefork`` command's workers, or on one
``prefork.server`` of your own::

    import prefork.asgi
    import prefork.server

    server = prefork.server.listen(host="localhost", port=8000, tls=False,
                                   onstream=prefork.asgi.onstream(app))
    server.loop()

The adapter lives in :mod:`prefork.apps`; docs/asgi.md describes the scopes, the extensions,
lifespan, disconnects and the differences from uvicorn.
"""

from __future__ import annotations

from prefork.apps.asgi import WS_MAX_SIZE, onstream
from prefork.apps.asgi_scope import ClientDisconnected
from prefork.apps.lifespan import Lifespan, LifespanFailure

__all__ = ["WS_MAX_SIZE", "ClientDisconnected", "Lifespan", "LifespanFailure", "onstream"]
