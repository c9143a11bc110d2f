"""Test app: a FastAPI app as users write one (lifespan state, JSON, a WebSocket echo)."""

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, WebSocket


@asynccontextmanager
async def lifespan(app):
    yield {"started_by": os.getpid()}


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def root():
    return {"hello": "fastapi"}


@app.get("/items/{item_id}")
async def item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q, "pid": os.getpid()}


@app.get("/state")
async def state(request: Request):
    return {"started_by": request.state.started_by, "pid": os.getpid()}


@app.websocket("/ws")
async def echo(ws: WebSocket):
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text.upper())
