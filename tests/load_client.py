"""A steady load for the scale-out tests, run as its own process:
``python tests/load_client.py PORT SOURCE RESULT [--seconds S] [--requests N]``.

Three threads send ``GET /`` to 127.0.0.1:PORT from the local address SOURCE (a 127.x.y.z, so
the servers behind the balancer can tell the client from the balancer): two on kept-alive
connections, one on a new connection per request. Every answer must be a 200 whose body
(tests/apps/whoami_asgi.py) names SOURCE as the client. The load stops at SIGTERM, after S seconds
or N requests, whichever comes first (bounded in both), then writes RESULT (JSON):
``{"ok": n, "failed": n, "failures": [the first 20], "clients": [...], "pids": [...]}``.
It writes ``RESULT.started`` after its first good answer, so a test can wait for the load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import threading
import time
from pathlib import Path

stop = threading.Event()
lock = threading.Lock()
result: dict[str, object] = {"ok": 0, "failed": 0, "failures": [], "clients": set(), "pids": set()}


def record(status: int | None, body: bytes, error: str | None, source: str) -> None:
    with lock:
        if error is None and status == 200:
            client, _scheme, _version, pid = body.decode().split()
            result["clients"].add(client)  # type: ignore[union-attr]
            result["pids"].add(int(pid))  # type: ignore[union-attr]
            if client == source:
                result["ok"] += 1  # type: ignore[operator]
                return
            error = f"client seen as {client}"
        failures = result["failures"]
        assert isinstance(failures, list)
        result["failed"] += 1  # type: ignore[operator]
        if len(failures) < 20:  # the first few, to say what went wrong
            failures.append(f"{time.monotonic():.3f} {status} {error} {body[:100]!r}")


def worker(port: int, source: str, keep_alive: bool, budget: list[int]) -> None:
    conn = None
    while not stop.is_set():
        with lock:
            if budget[0] <= 0:
                stop.set()
                break
            budget[0] -= 1
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, 10, source_address=(source, 0))
        status, body, error = None, b"", None
        try:
            conn.request("GET", "/", headers={} if keep_alive else {"Connection": "close"})
            response = conn.getresponse()
            status, body = response.status, response.read()
            if response.will_close or not keep_alive:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            error = repr(exc)
            conn.close()
            conn = None
        record(status, body, error, source)
        if status == 200 and not Path(started).exists():
            Path(started).write_text("1")
    if conn is not None:
        conn.close()


def main() -> None:
    global started
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("source")
    parser.add_argument("result")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    started = args.result + ".started"
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    budget = [args.requests]
    threads = [
        threading.Thread(target=worker, args=(args.port, args.source, keep, budget))
        for keep in (True, True, False)
    ]
    for thread in threads:
        thread.start()
    stop.wait(args.seconds)
    stop.set()
    for thread in threads:
        thread.join(30)
    out = dict(result, clients=sorted(result["clients"]), pids=sorted(result["pids"]))  # type: ignore[call-overload]
    Path(args.result).write_text(json.dumps(out))


started = ""

if __name__ == "__main__":
    main()
