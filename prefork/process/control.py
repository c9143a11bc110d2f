"""The control socket (``--control-socket PATH``) and its client, ``prefork ctl``.

One command per connection: the client sends one line, the master answers and closes. The
socket is mode 0600 and the master checks the peer's uid (``SO_PEERCRED``): only the user the
master runs as may use it. Commands::

    status [--json]   a table (or JSON) of the workers: pid, generation, state, age,
                      open/total connections, requests, last heartbeat, RSS, CPU%
    metrics           the same figures in the Prometheus text exposition format
    reload            like HUP          stop [--quick]   like TERM (INT)
    pause | resume    stop / start accepting
    workers N         set the number of workers
    reopen-logs       like USR1

The rendering functions are pure (rows in, text out) so they are tested without a master.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefork.process.master import Master

COLUMNS = ("pid", "gen", "state", "age", "open", "total", "requests", "beat", "rss", "cpu%")


def rows(master: Master) -> list[dict[str, Any]]:
    """One dict per worker with the figures ``status`` and ``metrics`` show."""
    now = time.monotonic()
    out = []
    for worker in sorted(master.workers.values(), key=lambda w: w.started):
        slot = master.dispatcher.slots.get(worker.pid)
        rss, cpu = _usage(worker)
        out.append(
            {
                "pid": worker.pid,
                "generation": worker.generation,
                "state": _state(worker),
                "age": round(now - worker.started, 1),
                "open": slot.outstanding if slot else 0,
                "total": slot.total if slot else 0,
                "requests": worker.requests,
                "heartbeat_age": round(now - worker.last_seen, 1),
                "rss": rss,
                "cpu_percent": cpu,
            }
        )
    return out


def _state(worker: Any) -> str:
    for flag in ("closing", "recycling"):
        if getattr(worker, flag):
            return flag
    kind = "attached" if worker.attached else "ready"
    return kind if worker.ready else "booting"


def _usage(worker: Any) -> tuple[int, float]:
    import psutil

    try:
        if worker.process is None:
            worker.process = psutil.Process(worker.pid)
            worker.process.cpu_percent(None)  # the first call only starts the measurement
        return int(worker.process.memory_info().rss), worker.process.cpu_percent(None)
    except psutil.Error:
        return 0, 0.0


def table(data: list[dict[str, Any]], master_pid: int) -> str:
    """The ``status`` table."""
    lines = [f"master {master_pid}: {len(data)} workers", "  ".join(f"{c:>9}" for c in COLUMNS)]
    for r in data:
        cells = (
            r["pid"], r["generation"], r["state"], f"{r['age']:.0f}s", r["open"], r["total"],
            r["requests"], f"{r['heartbeat_age']:.1f}s", f"{r['rss'] // 1048576}M",
            f"{r['cpu_percent']:.0f}",
        )  # fmt: skip
        lines.append("  ".join(f"{c!s:>9}" for c in cells))
    return "\n".join(lines) + "\n"


_METRICS = (
    ("requests", "prefork_worker_requests", "counter", "Requests the worker has started."),
    ("open", "prefork_worker_open_connections", "gauge", "Connections handed and not closed."),
    ("total", "prefork_worker_connections", "counter", "Connections handed to the worker."),
    ("rss", "prefork_worker_resident_memory_bytes", "gauge", "Resident memory of the worker."),
    ("cpu_percent", "prefork_worker_cpu_percent", "gauge", "CPU use since the last sample."),
    ("heartbeat_age", "prefork_worker_heartbeat_age_seconds", "gauge", "Since its last message."),
)


def metrics(data: list[dict[str, Any]]) -> str:
    """The Prometheus text exposition format (version 0.0.4) of the same figures."""
    out = [
        "# HELP prefork_workers Worker processes.",
        "# TYPE prefork_workers gauge",
        f"prefork_workers {len(data)}",
    ]
    for key, name, kind, text in _METRICS:
        suffix = "_total" if kind == "counter" else ""
        out.append(f"# HELP {name}{suffix} {text}")
        out.append(f"# TYPE {name}{suffix} {kind}")
        for r in data:
            labels = f'pid="{r["pid"]}",generation="{r["generation"]}",state="{r["state"]}"'
            out.append(f"{name}{suffix}{{{labels}}} {r[key]}")
    return "\n".join(out) + "\n"


class ControlServer:
    """The master's end: accept, read one line, answer, close (bounded by a 1 s timeout)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        self.sock.listen(8)
        self.sock.setblocking(False)

    def close(self, unlink: bool = True) -> None:
        self.sock.close()
        if unlink:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def serve_one(self, master: Master) -> None:
        """Answer one waiting client (called when the socket is readable)."""
        try:
            client, _ = self.sock.accept()
        except OSError:
            return
        with client:
            client.settimeout(1.0)
            try:
                creds = client.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
                )
                if struct.unpack("3i", creds)[1] != os.getuid():
                    client.sendall(b"error: permission denied\n")
                    return
                line = _read_line(client)
                client.sendall(answer(master, line.split()).encode())
            except OSError:
                return


def _read_line(client: socket.socket) -> str:
    data = b""
    while b"\n" not in data and len(data) < 1024:
        chunk = client.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", "replace")


def answer(master: Master, words: list[str]) -> str:
    """Carry out one command on ``master``; the text to send back."""
    if not words:
        return "error: empty command\n"
    name, args = words[0], words[1:]
    if name == "status":
        data = rows(master)
        return json.dumps(data) + "\n" if "--json" in args else table(data, os.getpid())
    if name == "metrics":
        return metrics(rows(master))
    if name == "workers" and len(args) == 1 and args[0].isdigit() and int(args[0]) >= 1:
        master.target = int(args[0])
        return f"ok: {master.target} workers\n"
    simple = {
        "reload": master.reload,
        "pause": master.pause,
        "resume": master.resume,
        "reopen-logs": master.handle_usr1,
        "stop": lambda: master.stop(graceful="--quick" not in args),
    }
    if name in simple:
        simple[name]()
        return f"ok: {name}\n"
    return f"error: unknown command {' '.join(words)!r}\n"


def request(path: str, words: list[str], timeout: float = 5.0) -> str:
    """The client: send ``words`` as one line to the control socket at ``path``; the answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(" ".join(words).encode() + b"\n")
        parts = []
        while chunk := sock.recv(65536):
            parts.append(chunk)
    return b"".join(parts).decode("utf-8", "replace")
