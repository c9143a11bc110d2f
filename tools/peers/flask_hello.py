"""Flask hello app for tools/bench --suite apps: ``tools.peers.flask_hello:app``.

One route, ``GET /``, through Flask's ordinary path (request context, URL map, the view's
return value made into a Response): 200 text/plain "Hello world!\\n" with a content-length.
The same module runs on prefork (``--interface wsgi --threads 4``) and on gunicorn gthread
(``-w 1 --threads 4``); Flask must be importable by both (the peers venv and prefork's python).
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> tuple[str, dict[str, str]]:
    return "Hello world!\n", {"Content-Type": "text/plain"}
