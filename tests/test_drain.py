"""Health checks and drain under a real master (docs/scale-out.md): ``prefork ctl drain`` and
``undrain``, SIGTERM with ``--drain-time``, workers started during a drain, a reload, and
readiness at start-up (no 200 from the health path before a worker's ASGI startup is done).

Every step synchronises on what a client sees (a 503, a served request, a worker's pid in the
log) or on the master's exit; nothing sleeps to wait.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers import read_response, wait_until
from tests.master_helpers import APPS, REPO, clean_env, connect, pid_of, raw_get

TIMEOUT = 15.0
HEALTH = ("--health-path", "/healthz")


def ctl(path: str, *words: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "prefork", "ctl", "--control-socket", path, *words],
        capture_output=True, text=True, timeout=20, cwd=REPO, env=clean_env(),
    )  # fmt: skip
    return result.stdout


def health(port: int) -> tuple[int, bytes]:
    """``GET /healthz`` on a new connection: ``(status, body)``."""
    status, body, _ = raw_get(port, "/healthz")
    return status, body


def wait_health(port: int, status: int) -> None:
    wait_until(lambda: health(port)[0] == status, TIMEOUT, f"the health path to answer {status}")


def started_request(port: int, ms: int) -> socket.socket:
    """A request to tests/apps/slow.py that is in flight in a worker (its head has arrived)."""
    sock = connect(port, timeout=TIMEOUT)
    sock.sendall(f"GET /?ms={ms} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"closed before the response head: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def test_ctl_drain_turns_every_worker_to_503_and_undrain_back(start_master, tmp_path):
    path = str(tmp_path / "ctl.sock")
    access = tmp_path / "access.log"
    master = start_master(
        "pid", *HEALTH, "--control-socket", path, "--access-log", str(access), workers=2
    )
    workers = set(master.wait_workers(2))
    assert health(master.port) == (200, b"ok\n")
    assert ctl(path, "drain") == "ok: drain\n"
    wait_health(master.port, 503)
    assert [health(master.port) for _ in range(8)] == [(503, b"draining\n")] * 8
    # the work goes on, on both workers (the health checks were spread the same way)
    served = set()
    for _ in range(20):  # keep-alive requests: each response ends its connection now
        with connect(master.port, timeout=TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            raw = read_response(sock)  # to the server's close
        assert raw.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close\r\n" in raw.lower()
        served.add(pid_of(raw.partition(b"\r\n\r\n")[2]))
    assert served == workers
    # health checks are not logged (the start-up's own checks of / are)
    wait_until(lambda: access.read_text().count('"GET / HTTP/1.1" 200') >= 20, TIMEOUT, "log")
    assert "/healthz" not in access.read_text()
    assert ctl(path, "status").startswith(f"master {master.pid}: 2 workers, draining\n")
    assert "prefork_draining 1" in ctl(path, "metrics")
    with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:  # HTTP/2 the same
        response = client.get(f"http://127.0.0.1:{master.port}/healthz")
        assert (response.http_version, response.status_code) == ("HTTP/2", 503)
    assert ctl(path, "undrain") == "ok: undrain\n"
    wait_health(master.port, 200)
    assert [health(master.port)[0] for _ in range(8)] == [200] * 8
    assert "prefork_draining 0" in ctl(path, "metrics")


def test_a_worker_started_during_a_drain_drains_too(start_master, tmp_path):
    """The replacement of a dead worker, and a reload's new generation, start draining."""
    path = str(tmp_path / "ctl.sock")
    master = start_master("hello", *HEALTH, "--control-socket", path, workers=1)
    (first,) = master.wait_workers(1)
    assert ctl(path, "drain") == "ok: drain\n"
    wait_health(master.port, 503)
    os.kill(first, signal.SIGKILL)
    (second,) = wait_until(
        lambda: [p for p in master.ready_workers() if p != first] or None, TIMEOUT, "a new worker"
    )
    master.wait_workers(1)
    assert health(master.port) == (503, b"draining\n")  # the only worker is the new one
    master.signal(signal.SIGHUP)
    wait_until(lambda: "reload: generation 1 serving" in master.log(), TIMEOUT, "the reload to end")
    (third,) = master.wait_workers(1)
    assert third not in (first, second)
    assert health(master.port) == (503, b"draining\n")
    assert raw_get(master.port, "/")[0] == 200
    assert ctl(path, "undrain") == "ok: undrain\n"
    assert health(master.port) == (200, b"ok\n")


def test_sigterm_drains_for_drain_time_then_stops_gracefully(start_master):
    """TERM: the health path says 503 at once while requests are still served; when the drain
    time is over the master stops as before, and a request in flight finishes."""
    master = start_master("slow", *HEALTH, "--drain-time", "3", workers=2)
    assert health(master.port) == (200, b"ok\n")
    master.signal(signal.SIGTERM)
    wait_health(master.port, 503)
    assert raw_get(master.port, "/")[:2] == (200, b"slept 0\n")  # still accepting, serving
    in_flight = started_request(master.port, 4000)  # outlives the drain time
    with in_flight:
        assert master.wait(TIMEOUT * 2) == 0
        assert read_response(in_flight).endswith(b"slept 4000\n")
    log = master.log()
    assert "graceful stop in" in log and log.index("graceful stop in") < log.index(
        "graceful stop\n"
    )


def test_a_second_sigterm_skips_the_drain_time(start_master):
    """And a reload during a stop's drain time is ignored: the stop is decided."""
    master = start_master("slow", *HEALTH, "--drain-time", "600", workers=1)
    (worker,) = master.wait_workers(1)
    master.signal(signal.SIGTERM)
    wait_health(master.port, 503)
    master.signal(signal.SIGHUP)
    wait_until(lambda: "reload ignored" in master.log(), TIMEOUT, "the reload to be refused")
    assert master.workers() == [worker]
    in_flight = started_request(master.port, 1000)
    with in_flight:
        master.signal(signal.SIGTERM)
        assert master.wait(TIMEOUT * 2) == 0  # long before 600 s
        assert read_response(in_flight).endswith(b"slept 1000\n")


def test_sigint_during_the_drain_time_stops_at_once(start_master):
    master = start_master("hello", *HEALTH, "--drain-time", "600", workers=1)
    master.signal(signal.SIGTERM)
    wait_health(master.port, 503)
    master.signal(signal.SIGINT)
    assert master.wait(TIMEOUT * 2) == 0
    assert "quick stop" in master.log()


def test_no_health_200_before_the_asgi_startup_is_done(start_master, tmp_path: Path):
    """Until a worker's lifespan startup completes, the master hands it nothing: a health check
    waits in the backlog, unanswered; once the startup is done it gets 200."""
    gate_path = str(tmp_path / "gate.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gate:
        gate.bind(gate_path)
        gate.listen(1)
        gate.settimeout(TIMEOUT)
        master = start_master(
            None, *HEALTH, "--lifespan", "on", f"{APPS / 'asgi_gate.py'}:app",
            workers=1, wait=False, env=clean_env(ASGI_GATE=gate_path),
        )  # fmt: skip
        startup, _ = gate.accept()  # the worker's startup has begun, and waits for us
        with startup, connect(master.port, timeout=TIMEOUT) as early:
            early.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            readable, _, _ = select.select([early], [], [], 1.0)
            assert readable == [], "answered before the application was up"
            master.check_running()
            startup.sendall(b"go")
            response = read_response(early)
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"\r\n\r\nok\n")
    assert raw_get(master.port, "/")[:2] == (200, b"started")
