"""Issue 10's "done when": FastAPI and Django's ASGI handler run unchanged under
``prefork --workers 2 APP``, the interface told by ``--interface auto`` (Flask and Django's
WSGI handler: tests/test_wsgi_frameworks.py::test_under_a_master)."""

from __future__ import annotations

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.master_helpers import APPS

TIMEOUT = 10.0


@pytest.mark.parametrize("interface", ["auto", "asgi"])
def test_fastapi_under_a_master(start_master, interface: str) -> None:
    master = start_master(None, "--interface", interface, f"{APPS / 'asgi_fastapi.py'}:app")
    workers = master.wait_workers(2)
    base = f"http://127.0.0.1:{master.port}"
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
        item = client.get(f"{base}/items/7", params={"q": "x"}).json()
        assert item["item_id"] == 7 and item["q"] == "x" and item["pid"] in workers
        assert client.get(f"{base}/items/nope").status_code == 422
        state = client.get(f"{base}/state").json()
        assert state["started_by"] == state["pid"], "each worker ran its own lifespan startup"
    with ws_connect(f"ws://127.0.0.1:{master.port}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "HELLO"


def test_django_asgi_under_a_master(start_master) -> None:
    master = start_master(None, "tests.apps.asgi_django:app")
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
        response = client.get(f"http://127.0.0.1:{master.port}/hello/")
    assert response.status_code == 200
    assert "hello django GET" in response.text
