"""Flask and Django, unchanged, on prefork.wsgi: real applications (tests/apps/wsgi_flask.py,
tests/apps/wsgi_django.py) on ``serve(...)`` servers, then each under a real master.

Streaming tests hold the application's second part on an event the test sets once the first
part has arrived, so "each part leaves when it is produced" is checked without sleeping.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefork import wsgi
from tests.helpers import pattern
from tests.master_helpers import APPS

flask = pytest.importorskip("flask")
django = pytest.importorskip("django")

from tests.apps import wsgi_django, wsgi_flask  # noqa: E402 - after the skips

TIMEOUT = 10.0


@pytest.fixture(params=["h1", "h2"])
def client_for(request: Any) -> Iterator[Any]:
    """Make an httpx client for a running server: HTTP/1.1, or HTTP/2 with prior knowledge."""
    made: list[httpx.Client] = []

    def make(running: Any) -> httpx.Client:
        h2 = request.param == "h2"
        made.append(
            httpx.Client(
                base_url=running.url, http1=not h2, http2=h2, timeout=TIMEOUT, trust_env=False
            )
        )
        return made[-1]

    yield make
    for c in made:
        c.close()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- Flask ------------------------------------------------------------------------------------


@pytest.fixture
def flask_server(serve) -> Any:
    wsgi_flask.STREAM_GATE.clear()
    return serve(wsgi.onstream(wsgi_flask.app))


def test_flask_json(flask_server, client_for) -> None:
    r = client_for(flask_server).post("/json?a=1", json={"x": [1, "é"]})
    assert r.status_code == 200
    assert r.json() == {"got": {"x": [1, "é"]}, "args": {"a": "1"}, "path": "/json"}


def test_flask_stream_with_context(flask_server, client_for) -> None:
    with client_for(flask_server).stream("GET", "/stream?name=ada") as r:
        lines = r.iter_lines()
        assert next(lines) == "hello ada"
        wsgi_flask.STREAM_GATE.set()
        assert list(lines) == ["bye ada"]
    assert r.headers["content-type"].startswith("text/plain")


@pytest.mark.timeout(120)
def test_flask_large_upload_with_length_and_chunked(flask_server, client_for) -> None:
    upload = pattern(16 << 20)
    c = client_for(flask_server)
    r = c.post("/upload", content=upload)
    assert r.json() == {"size": len(upload), "sha256": digest(upload), "te": None}
    pieces = (upload[i : i + 100_000] for i in range(0, len(upload), 100_000))
    r = c.post("/upload", content=pieces)  # no length: chunked over HTTP/1.1
    assert (r.json()["size"], r.json()["sha256"]) == (len(upload), digest(upload))


def test_flask_chunked_request_body_is_read_whole(flask_server) -> None:
    """A chunked JSON body (no Content-Length): wsgi.input_terminated lets Werkzeug read it."""
    with httpx.Client(base_url=flask_server.url, timeout=TIMEOUT, trust_env=False) as c:
        r = c.post(
            "/json",
            content=iter([b'{"parts": ', b"[1, 2,", b" 3]}"]),
            headers={"content-type": "application/json"},
        )
    assert r.json()["got"] == {"parts": [1, 2, 3]}


def test_flask_multipart_form(flask_server, client_for) -> None:
    data = pattern(300_000)
    r = client_for(flask_server).post(
        "/form", data={"field": "value"}, files={"file": ("a.bin", data)}
    )
    assert r.json() == {
        "field": "value",
        "filename": "a.bin",
        "size": len(data),
        "sha256": digest(data),
    }


def test_flask_send_file(flask_server, client_for, tmp_path: Path) -> None:
    data = pattern(2 << 20)
    (tmp_path / "f.bin").write_bytes(data)
    r = client_for(flask_server).get("/file", params={"path": str(tmp_path / "f.bin")})
    assert (r.status_code, r.content) == (200, data)


def test_flask_error_is_flasks_500(flask_server, client_for) -> None:
    c = client_for(flask_server)
    assert c.get("/boom").status_code == 500  # Flask's own error page
    assert c.head("/whoami").status_code == 200
    assert c.get("/whoami").json()["thread"].startswith("prefork-wsgi-")


# -- Django -----------------------------------------------------------------------------------


@pytest.fixture
def django_server(serve) -> Any:
    from django.conf import settings

    # Django is configured once per process: by tests/apps/wsgi_django.py, whoever imports it
    assert wsgi_django.__name__ == settings.ROOT_URLCONF, "Django configured elsewhere"
    wsgi_django.STREAM_GATE.clear()
    return serve(wsgi.onstream(wsgi_django.app))


def test_django_view(django_server, client_for) -> None:
    c = client_for(django_server)
    r = c.get("/hello/", params={"name": "pony"})
    assert (r.status_code, r.text) == (200, "hello pony GET\n")
    assert c.head("/hello/").content == b""
    assert c.get("/missing/").status_code == 404


def test_django_form_post(django_server, client_for) -> None:
    r = client_for(django_server).post("/form/", data={"field": "välue"})
    assert r.json() == {"field": "välue"}
    r = client_for(django_server).post("/form/", data={"other": "x"})
    assert r.status_code == 400 and "field" in r.json()


def test_django_multipart_upload_spools_to_a_file(django_server, client_for) -> None:
    data = pattern(3 << 20)
    r = client_for(django_server).post(
        "/form/", data={"field": "f"}, files={"file": ("big.bin", data, "application/octet-stream")}
    )
    assert r.json() == {
        "field": "f",
        "name": "big.bin",
        "size": len(data),
        "sha256": digest(data),
        "spooled": True,
    }


def test_django_streaming_response(django_server, client_for) -> None:
    with client_for(django_server).stream("GET", "/stream/") as r:
        parts = r.iter_raw()
        assert next(parts) == b"first\n"
        wsgi_django.STREAM_GATE.set()
        assert b"".join(parts) == b"second\n"


def test_django_file_response(django_server, client_for, tmp_path: Path) -> None:
    data = pattern(1 << 20)
    (tmp_path / "d.bin").write_bytes(data)
    r = client_for(django_server).get("/file/", params={"path": str(tmp_path / "d.bin")})
    assert (r.status_code, r.headers["content-length"], r.content) == (200, str(len(data)), data)


# -- under a master ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "expected"),
    [
        (f"{APPS / 'wsgi_flask.py'}:app", "/whoami", "thread"),
        ("tests.apps.wsgi_django:app", "/hello/", "hello django GET"),
    ],
    ids=["flask", "django"],
)
def test_under_a_master(start_master, spec: str, path: str, expected: str) -> None:
    """``prefork APP`` tells a WSGI app by its signature and serves it from its workers."""
    master = start_master(None, "--threads", "2", spec, workers=2)
    with httpx.Client(timeout=TIMEOUT, trust_env=False) as c:
        r = c.get(f"http://127.0.0.1:{master.address}{path}")
    assert r.status_code == 200
    assert expected in r.text
    if path == "/whoami":
        body = json.loads(r.text)
        assert body["pid"] != master.pid and body["thread"].startswith("prefork-wsgi-")
