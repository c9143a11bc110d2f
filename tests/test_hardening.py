"""Issue 9: no input, peer or load crashes a process. Each test fails on the code before its fix."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
import time

import httpx
import pytest

from prefork import server as prefork_server
from tests.conftest import read_response
from tests.master_helpers import Masters, connect, raw_get, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def masters(tmp_path):
    with Masters(tmp_path) as started:
        yield started


def test_app_exception_leaves_the_worker_serving(masters) -> None:
    """Item 0: an app raising under the prefork command answers 500, logs the traceback with
    the request line, and the request in flight on the same worker completes."""
    master = masters.start("boom", workers=1)
    with connect(master.address) as slow:
        slow.sendall(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert slow.recv(1024).startswith(b"HTTP/1.1 200"), "the slow request is in flight"
        status, _, _ = raw_get(master.address, "/boom")
        assert status == 500
        status, _, _ = raw_get(master.address, "/boom-late")  # cut off after its head
        assert status == 200
        rest = read_response(slow)
    pid = int(rest.rpartition(b"\r\n\r\n")[2] or rest)
    assert pid == master.workers()[0], "the same worker answered: it did not die"
    status, body, _ = raw_get(master.address, "/")
    assert (status, int(body)) == (200, pid)
    log = master.stderr()
    assert "RuntimeError: boom" in log and "GET /boom" in log, log
    assert "Traceback" in log


@pytest.mark.parametrize("how", ["http1", "h2c", "prior-knowledge"])
def test_access_log_with_every_protocol(masters, how: str) -> None:
    """Item 1: --access-log with HTTP/2 requests (h2c, prior knowledge) logs each request
    and the worker lives (it died of the access logger reading a private field)."""
    master = masters.start("hello", "--access-log", "-", workers=1)
    url = f"http://127.0.0.1:{master.address}/logged-{how}"
    if how == "http1":
        assert httpx.get(url, timeout=10).status_code == 200
    else:
        curl = ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_version}"]
        flag = "--http2" if how == "h2c" else "--http2-prior-knowledge"
        out = subprocess.run([*curl, flag, url], capture_output=True, text=True, timeout=20)
        assert out.stdout == "2", out
    worker = master.workers()[0]

    def access_log() -> str:
        return master.out.read_text(errors="replace")

    wait_until(lambda: f"/logged-{how}" in access_log(), what="the access log line")
    line = next(x for x in access_log().splitlines() if f"/logged-{how}" in x)
    version = "HTTP/1.1" if how == "http1" else "HTTP/2"
    assert f'"GET /logged-{how} {version}" 200 6' in line, line
    assert raw_get(master.address)[0] == 200
    assert master.workers() == [worker], "the worker survived"


def test_grace_for_a_connection_handed_over_during_close() -> None:
    """Item 11: a silent connection given to a server that closes in the same turn gets the
    1 s grace, not the 10 s set-up timeout."""

    async def never(server, stream):
        raise AssertionError("no request was sent")

    srv = prefork_server.new(onstream=never, tls=False)
    a, b = socket.socketpair()
    try:
        srv.add_socket(a)
        srv.close()
        b.settimeout(8)
        started = time.monotonic()
        srv.loop(timeout=8)
        assert srv.empty(), "the connection outlived its grace"
        assert time.monotonic() - started < 5, "closed by the 10 s set-up timeout, not 1 s"
        assert b.recv(1) == b""
    finally:
        b.close()


def test_app_file_named_like_a_stdlib_module(tmp_path) -> None:
    """Item 15: ``json.py:onstream`` loads under a private name; ``json`` stays the stdlib's."""
    script = (
        "import json, sys\n"
        "from prefork.app import load\n"
        "app = load(sys.argv[1])\n"
        "assert sys.modules['json'] is json, 'the app file replaced json'\n"
        "assert app.__module__ != 'json', app.__module__\n"
        "print(json.dumps({'loaded': app.__name__}))\n"
    )
    path = pathlib.Path(__file__).parent / "apps" / "shadow" / "json.py"
    out = subprocess.run(
        [sys.executable, "-c", script, f"{path}:onstream"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '{"loaded": "onstream"}'
