"""Real frameworks on prefork.asgi: FastAPI (JSON and validation, dependencies, streaming,
uploads, background tasks, WebSocket, lifespan state) and Starlette (server-sent events through
StreamingResponse, StaticFiles through pathsend, WebSocket).

Each application's lifespan runs on the server's own loop before the first request (as a prefork
worker runs it before it says ready) and its shutdown in teardown. Clients: httpx over HTTP/1.1
and HTTP/2, the ``websockets`` client. Background work reports through a ``queue.Queue``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import (
    BackgroundTasks,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Request,
    UploadFile,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from websockets.asyncio.client import connect

import prefork.asgi
from tests.conftest import Running, run_async
from tests.helpers import pattern
from tests.test_tls import recorder

TIMEOUT = 10.0


def on_loop(running: Running, coro: Any) -> Any:
    """Run ``coro`` on the server's loop (where the application lives) and wait for it."""
    loop = running.server._loop
    assert loop is not None
    return asyncio.run_coroutine_threadsafe(coro, loop).result(TIMEOUT)


@pytest.fixture
def framework(serve) -> Iterator[Callable[..., tuple[Running, list[Any], Any]]]:
    """``framework(app, **server_options)``: serve ``app`` with its lifespan started on the
    server's loop; (the running server, onerror's list, the Lifespan)."""
    started: list[tuple[Running, prefork.asgi.Lifespan]] = []

    def start(app: Any, **options: Any) -> tuple[Running, list[Any], Any]:
        errors: list[Any] = []
        lifespan = prefork.asgi.Lifespan(app, "on")
        handler = prefork.asgi.onstream(app, state=lifespan.state)
        running = serve(handler, onerror=recorder(errors), **options)
        on_loop(running, lifespan.startup())
        started.append((running, lifespan))
        return running, errors, lifespan

    yield start
    for running, lifespan in started:  # before the serve fixture closes the servers
        if running.thread.is_alive():
            on_loop(running, lifespan.shutdown())


# -- FastAPI -------------------------------------------------------------------------------------


class Item(BaseModel):
    name: str
    price: float


def fastapi_app(done: queue.Queue) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        done.put("startup")
        yield {"greeting": "hello"}
        done.put("shutdown")

    app = FastAPI(lifespan=lifespan)

    def token(x_token: str = Header()) -> str:
        if x_token != "secret":
            raise HTTPException(status_code=403, detail="bad token")
        return x_token

    @app.post("/items")
    async def create(item: Item, request: Request) -> dict[str, Any]:
        return {"name": item.name, "double": item.price * 2, "greeting": request.state.greeting}

    @app.get("/private")
    async def private(tok: str = Depends(token)) -> dict[str, str]:
        return {"token": tok}

    @app.get("/numbers")
    async def numbers() -> StreamingResponse:
        async def lines() -> AsyncIterator[str]:
            for i in range(3):
                yield f"{i}\n"

        return StreamingResponse(lines(), media_type="text/plain")

    @app.post("/upload")
    async def upload(file: UploadFile) -> dict[str, Any]:
        return {"name": file.filename, "size": len(await file.read())}

    @app.post("/later")
    async def later(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(done.put, "background ran")
        return {"queued": True}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_json({"echo": text, "greeting": websocket.state.greeting})
        except WebSocketDisconnect as exc:
            done.put(("ws closed", exc.code))

    return app


@pytest.mark.parametrize("http2", [False, True])
def test_fastapi_json_validation_and_dependencies(framework, http2: bool) -> None:
    done: queue.Queue = queue.Queue()
    running, errors, _ = framework(fastapi_app(done))
    assert done.get(timeout=TIMEOUT) == "startup"
    with httpx.Client(base_url=running.url, http1=not http2, http2=http2, timeout=TIMEOUT) as c:
        r = c.post("/items", json={"name": "pen", "price": 1.25})
        assert r.json() == {"name": "pen", "double": 2.5, "greeting": "hello"}
        assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert c.post("/items", json={"name": "pen"}).status_code == 422  # no price
        assert c.post("/items", content=b"{not json").status_code == 422
        assert c.get("/private").status_code == 422  # the header is missing
        assert c.get("/private", headers={"x-token": "no"}).json() == {"detail": "bad token"}
        assert c.get("/private", headers={"x-token": "secret"}).json() == {"token": "secret"}
        assert c.get("/nowhere").status_code == 404
    assert errors == []


def test_fastapi_streaming_upload_and_background_tasks(framework) -> None:
    done: queue.Queue = queue.Queue()
    running, errors, _ = framework(fastapi_app(done))
    assert done.get(timeout=TIMEOUT) == "startup"
    data = pattern(3 << 20)
    with httpx.Client(base_url=running.url, timeout=TIMEOUT) as c:
        with c.stream("GET", "/numbers") as r:
            assert r.headers["transfer-encoding"] == "chunked"
            assert r.read() == b"0\n1\n2\n"
        r = c.post("/upload", files={"file": ("data.bin", data)})
        assert r.json() == {"name": "data.bin", "size": len(data)}
        assert c.post("/later").json() == {"queued": True}
    assert done.get(timeout=TIMEOUT) == "background ran"
    assert errors == []


def test_fastapi_websocket_and_lifespan_shutdown(framework) -> None:
    done: queue.Queue = queue.Queue()
    running, errors, lifespan = framework(fastapi_app(done))
    assert done.get(timeout=TIMEOUT) == "startup"

    async def client() -> Any:
        async with connect(f"ws://127.0.0.1:{running.port}/ws") as ws:
            await ws.send("hi")
            return await ws.recv()

    assert run_async(client()) == '{"echo":"hi","greeting":"hello"}'
    assert done.get(timeout=TIMEOUT) == ("ws closed", 1000)
    on_loop(running, lifespan.shutdown())
    assert done.get(timeout=TIMEOUT) == "shutdown"
    assert errors == []


# -- Starlette -----------------------------------------------------------------------------------


def starlette_app(done: queue.Queue, gate: asyncio.Event, static: Path) -> Any:
    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            yield "data: one\n\n"
            await gate.wait()
            while True:  # a keep-alive comment now and then, as event streams do
                yield ": tick\n\n"
                await asyncio.sleep(0.01)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def reverse(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="rev")
        async for text in websocket.iter_text():
            await websocket.send_text(text[::-1])

    routes = [
        Route("/events", events),
        WebSocketRoute("/ws", reverse),
        Mount("/static", StaticFiles(directory=static)),
    ]
    app = Starlette(routes=routes)

    async def recorded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except BaseException as exc:
            done.put((scope.get("path"), type(exc)))
            raise

    return recorded


def test_starlette_server_sent_events_and_the_client_leaving(framework, tmp_path: Path) -> None:
    done: queue.Queue = queue.Queue()
    gate = asyncio.Event()
    running, errors, _ = framework(starlette_app(done, gate, tmp_path))
    with (
        httpx.Client(timeout=TIMEOUT) as c,
        c.stream("GET", f"{running.url}/events") as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        assert next(r.iter_raw()) == b"data: one\n\n"  # before the stream goes on
    # the client has closed the connection: the next writes fail, Starlette stops quietly
    running.call(gate.set)
    assert done.get(timeout=TIMEOUT) == ("/events", ClientDisconnect)
    running.call(lambda: None)  # the loop step that ended the handler (and would report) is over
    assert errors == []


@pytest.mark.parametrize("http2", [False, True])
def test_starlette_static_files_go_through_pathsend(framework, tmp_path: Path, http2: bool) -> None:
    (tmp_path / "big.bin").write_bytes(pattern(2 << 20))
    running, errors, _ = framework(starlette_app(queue.Queue(), asyncio.Event(), tmp_path))
    with httpx.Client(base_url=running.url, http1=not http2, http2=http2, timeout=TIMEOUT) as c:
        r = c.get("/static/big.bin")
        assert (r.status_code, r.content) == (200, pattern(2 << 20))
        head = c.head("/static/big.bin")
        assert (head.headers["content-length"], head.content) == (str(2 << 20), b"")
        part = c.get("/static/big.bin", headers={"range": "bytes=10-19"})
        assert (part.status_code, part.content) == (206, pattern(20)[10:])
    assert errors == []


def test_starlette_websocket(framework) -> None:
    running, errors, _ = framework(starlette_app(queue.Queue(), asyncio.Event(), Path(".")))

    async def client() -> tuple[str | None, Any]:
        url = f"ws://127.0.0.1:{running.port}/ws"
        async with connect(url, subprotocols=["rev"]) as ws:  # type: ignore[list-item]
            await ws.send("prefork")
            return ws.subprotocol, await ws.recv()

    assert run_async(client()) == ("rev", "kroferp")
    assert errors == []
