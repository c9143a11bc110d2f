"""WSGI (PEP 3333) applications on prefork: ``onstream(app)`` is the handler that serves one.

```python
import prefork.server
from prefork import wsgi

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello world!\\n"]

server = prefork.server.listen(host="127.0.0.1", port=8000, onstream=wsgi.onstream(app))
server.loop()
```

The application runs in a bounded pool of threads per process, never on the event loop; the
request body streams in through ``wsgi.input`` and the response out, chunk by chunk, with
back-pressure both ways. docs/wsgi.md has the details; the adapter is ``prefork.apps.wsgi``.
"""

from __future__ import annotations

from prefork.apps.wsgi import FileWrapper, onstream

__all__ = ["FileWrapper", "onstream"]
