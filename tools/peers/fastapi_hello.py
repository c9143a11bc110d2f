"""FastAPI hello app for tools/bench --suite apps: ``tools.peers.fastapi_hello:app``.

One route, ``GET /``, an ``async def`` (run on the event loop, not in a thread pool) that
returns "Hello world!\\n" through FastAPI's ordinary path: routing, the endpoint's dependency
resolution, the return value encoded and wrapped in a ``PlainTextResponse`` (200 text/plain;
charset=utf-8, with a content-length). The same module runs on prefork (``--interface asgi``)
and on uvicorn; FastAPI must be importable by both (the peers venv and prefork's python).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/", response_class=PlainTextResponse)
async def hello() -> str:
    return "Hello world!\n"
