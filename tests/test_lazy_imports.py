"""Lighter workers (issue 13, point 4): a worker imports a protocol library when a connection
first needs it, the master imports none that its workers do not all need, and what the
workers inherit from it is frozen for the cyclic GC (so that it stays shared).

h2 (and hpack, hyperframe) comes with the first HTTP/2 connection (the preface, ``Upgrade:
h2c`` or ALPN ``h2``), pyOpenSSL and cryptography with the first TLS connection, wsproto with
the first WebSocket, and psutil only ever in the master. The evidence is functional: a real
worker (or server) process reports the libraries in its ``sys.modules`` (tests/apps/modules.py)
after it has served a request, first plain HTTP/1.1, then one that needs the library. Memory
itself is measured by ``python -m tools.bench --suite apps --scenarios idle-memory``
(docs/benchmarks.md), not asserted here.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.helpers import CURL, curl
from tests.master_helpers import REPO, clean_env

TIMEOUT = 10.0
H2 = {"h2", "hpack", "hyperframe"}
TLS = {"OpenSSL", "cryptography"}
MASTER_ONLY = {"psutil"}
OPTIONAL = H2 | TLS | MASTER_ONLY | {"wsproto", "email"}


def report(url: str, **client: Any) -> dict[str, Any]:
    """GET ``url`` with httpx (options ``client``): the app's ``{"pid", "loaded"}``."""
    with httpx.Client(timeout=TIMEOUT, trust_env=False, **client) as c:
        response = c.get(url)
    assert response.status_code == 200, response.text
    return dict(response.json(), http_version=response.http_version)


def loaded(url: str, **client: Any) -> set[str]:
    return set(report(url, **client)["loaded"])


@pytest.fixture
def single() -> Iterator[str]:
    """tests/apps/modules.py as a script: one ``prefork.server`` with ``tls=None`` and
    ``version=None`` in a process of its own; its address ``127.0.0.1:PORT``. Stopped by pid."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "apps" / "modules.py")],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        env=clean_env(),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(TIMEOUT), "the server did not print its port"
        port = int(proc.stdout.readline())
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()


# -- under a master ---------------------------------------------------------------------------


def test_a_plain_http1_worker_loads_no_optional_library(start_master) -> None:
    master = start_master("modules", workers=1)
    (worker,) = master.wait_workers(1)
    got = report(f"http://127.0.0.1:{master.port}/")
    assert got["pid"] == worker and got["http_version"] == "HTTP/1.1"
    assert set(got["loaded"]) & OPTIONAL == set()


def test_a_worker_inherits_the_masters_objects_frozen(start_master) -> None:
    """The master calls gc.freeze() before it forks: the worker's cyclic GC never writes to the
    objects it shares with the master (which would copy their pages)."""
    master = start_master("modules", workers=1)
    master.wait_workers(1)
    assert report(f"http://127.0.0.1:{master.port}/")["frozen"] > 10_000


def test_h2c_prior_knowledge_loads_h2_in_the_worker(start_master) -> None:
    master = start_master("modules", workers=1)
    url = f"http://127.0.0.1:{master.port}/"
    assert loaded(url) & H2 == set()
    got = report(url, http1=False, http2=True)
    assert got["http_version"] == "HTTP/2"
    assert set(got["loaded"]) >= H2
    assert set(got["loaded"]) & (TLS | MASTER_ONLY) == set()


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_upgrade_h2c_loads_h2_in_the_worker(start_master) -> None:
    master = start_master("modules", workers=1)
    url = f"http://127.0.0.1:{master.port}/"
    assert loaded(url) & H2 == set()
    done = curl("--http2", "-w", "\\n%{http_version}", url)
    assert done.returncode == 0, done.stderr
    body, version = done.stdout.decode().rsplit("\n", 1)
    assert version == "2", "curl was not switched to HTTP/2 by Upgrade: h2c"
    assert set(json.loads(body)["loaded"]) >= H2


def test_an_asgi_worker_loads_wsproto_with_the_first_websocket(start_master) -> None:
    master = start_master(None, "--interface", "asgi", "tests.apps.asgi_modules:app", workers=1)
    master.wait_workers(1)
    assert loaded(f"http://127.0.0.1:{master.port}/") & OPTIONAL == set()
    with ws_connect(f"ws://127.0.0.1:{master.port}/ws", open_timeout=TIMEOUT) as ws:
        now = set(json.loads(ws.recv(timeout=TIMEOUT)))
    assert "wsproto" in now
    assert now & (H2 | TLS | MASTER_ONLY) == set()


# -- one server, sniffing TLS and the preface ----------------------------------------------------


def test_a_sniffing_server_loads_tls_with_the_first_client_hello(single: str) -> None:
    assert loaded(f"http://{single}/") & OPTIONAL == set()
    got = set(report(f"https://{single}/", verify=False)["loaded"])
    # the default engine (auto, no ctx given) is the standard library's ssl: the generated
    # certificate needs cryptography, and pyOpenSSL stays out (docs/tls.md, "Two engines")
    assert "cryptography" in got, "the TLS connection was served without a certificate?"
    assert got & ({"OpenSSL"} | H2 | MASTER_ONLY) == set()  # httpx offered http/1.1 only


def test_a_sniffing_server_loads_h2_with_the_first_preface(single: str) -> None:
    assert loaded(f"http://{single}/") & H2 == set()
    assert loaded(f"http://{single}/", http1=False, http2=True) >= H2


# -- what the master imports --------------------------------------------------------------------


def test_the_command_imports_no_optional_library() -> None:
    """What ``prefork`` imports before it forks, every worker holds: the command's modules,
    with the worker's own core (asyncio, h11, the HTTP/1 path), and nothing optional."""
    code = "import sys, prefork.cli; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(),
        timeout=30,
        check=True,
    )
    modules = set(done.stdout.split())
    assert "prefork.aio.http1" in modules  # the core is shared with the workers, by design
    top = {name.partition(".")[0] for name in modules}
    assert top & (OPTIONAL | {"tomllib", "json", "random", "tempfile"}) == set()
    assert "prefork.websocket" not in modules


def test_the_asgi_adapter_defaults_match_the_websocket_module() -> None:
    """apps/asgi.py repeats prefork.websocket's keep-alive defaults rather than import it
    (wsproto) for them."""
    from prefork import websocket
    from prefork.apps import asgi

    params = inspect.signature(asgi.onstream).parameters
    assert params["ws_ping_interval"].default == websocket.PING_INTERVAL
    assert params["ws_ping_timeout"].default == websocket.PING_TIMEOUT
