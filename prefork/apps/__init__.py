"""Application interfaces as adapters on the stream contract: ASGI, WSGI, interface detection.

Each module here turns an application written for another interface into the one handler the
server knows, ``async def onstream(server, stream)`` (docs/stream.md): ASGI 3 (``asgi.py`` with
its HTTP cycle, ``asgi_websocket.py``, ``lifespan.py`` for the startup and shutdown events), WSGI
(``wsgi.py``), and which interface a callable speaks (``detect.py``). They import only prefork's
public modules (``stream``, ``headers``, ``errors``, ``websocket``), so HTTP/1, HTTP/2, TLS,
WebSocket, the limits, the timeouts and the master serve them unchanged, and the server never
knows they exist.
"""
