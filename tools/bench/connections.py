"""Workloads that open connections by hand: idle-memory and the master suite's spread."""

from __future__ import annotations

import argparse
import socket
import time
from collections import Counter
from typing import Any

from tools.bench.measure import busy_cpu_s, tree_cpu_s, tree_memory
from tools.bench.process import Running
from tools.bench.servers import HOST

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _recv(sock: socket.socket) -> bytes:
    if not (chunk := sock.recv(65536)):
        raise RuntimeError("server closed the connection before a full response")
    return chunk


def read_response(sock: socket.socket) -> int:
    """Read one complete response (Content-Length or chunked body); return its status."""
    return read_full_response(sock)[0]


def read_full_response(sock: socket.socket) -> tuple[int, bytes]:
    """Read one complete response (Content-Length or chunked body); return status and body."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += _recv(sock)
    head, body = buf.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    if "content-length" in headers:
        while len(body) < int(headers["content-length"]):
            body += _recv(sock)
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        while not body.endswith(b"0\r\n\r\n"):  # a hello body has no trailers
            body += _recv(sock)
    else:
        raise RuntimeError("keep-alive response without Content-Length or chunked body")
    return int(status_line.split()[1]), body


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read and no EOF: the server still holds it
    except OSError:
        return False


def idle_memory(srv: Running, args: argparse.Namespace) -> dict[str, Any]:
    """--idle connections, each after one keep-alive request, held open: the memory of the
    server's processes before and after. ``kib_per_conn`` is the RSS of all of them (after -
    before) / connections; ``pss_``/``uss_kib_per_conn`` the same with PSS and USS (see
    ``measure.tree_memory``); ``processes`` each process's figures ("before": idle, after the
    readiness probe)."""
    n, bad = args.idle, 0
    socks: list[socket.socket] = []
    before = tree_memory(srv.proc.pid)
    try:
        for _ in range(n):
            socks.append(s := socket.create_connection((HOST, srv.port), timeout=10.0))
            s.sendall(REQUEST)
            bad += not 200 <= read_response(s) < 300
        after = tree_memory(srv.proc.pid)
        alive = sum(still_open(s) for s in socks)
    finally:
        for s in socks:
            s.close()
    total = {k: (_sum(before, k), _sum(after, k)) for k in ("rss", "pss", "uss")}
    processes = _processes(srv.proc.pid, before, after)
    for proc in processes:
        print(_PROCESS_LINE.format(**proc))
    return {
        "kib_per_conn": (total["rss"][1] - total["rss"][0]) / n,
        "pss_kib_per_conn": (total["pss"][1] - total["pss"][0]) / n,
        "uss_kib_per_conn": (total["uss"][1] - total["uss"][0]) / n,
        "rss_before_kib": total["rss"][0],
        "rss_after_kib": total["rss"][1],
        "pss_before_kib": total["pss"][0],
        "pss_after_kib": total["pss"][1],
        "processes": processes,
        "connections": n,
        "open_at_measure": alive,
        "errors": bad + n - alive,
        "load_command": f"tools/bench: {n} connections x 1 request {REQUEST!r}, kept idle",
    }


_PROCESS_LINE = (
    "#   {role} {pid}: RSS {rss_before:,.0f} -> {rss_after:,.0f} KiB, "
    "PSS {pss_before:,.0f} -> {pss_after:,.0f}, USS {uss_before:,.0f} -> {uss_after:,.0f}"
)


def _sum(memory: dict[int, dict[str, float]], kind: str) -> float:
    return sum(m[kind] for m in memory.values())


def _processes(
    root: int, before: dict[int, dict[str, float]], after: dict[int, dict[str, float]]
) -> list[dict[str, Any]]:
    """One row per process seen before or after: the root ("main": a master, or the only
    process) first, then its descendants ("child"); a figure it lacks is 0."""
    rows = []
    for pid in sorted(before.keys() | after.keys(), key=lambda p: (p != root, p)):
        row: dict[str, Any] = {"pid": pid, "role": "main" if pid == root else "child"}
        for when, memory in (("before", before), ("after", after)):
            for kind in ("rss", "pss", "uss"):
                row[f"{kind}_{when}"] = memory.get(pid, {}).get(kind, 0.0)
        rows.append(row)
    return rows


PID_REQUEST = b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"


def ask_pid(sock: socket.socket) -> int:
    sock.sendall(PID_REQUEST)
    status, body = read_full_response(sock)
    if status != 200:
        raise RuntimeError(f"GET /pid answered {status}")
    return int(body)


def burst_spread(srv: Running, args: argparse.Namespace) -> dict[str, Any]:
    """--connections keep-alive connections opened back to back, then each asks GET /pid twice
    (the second answer must come from the same worker). Repeated --spread-rounds times."""
    n, rounds, splits, moved = args.connections, [], [], 0
    srv0, own0, all0 = tree_cpu_s(srv.proc.pid), time.process_time(), busy_cpu_s()
    t0 = time.monotonic()
    for _ in range(args.spread_rounds):
        socks: list[socket.socket] = []
        try:
            for _ in range(n):  # the burst: connect only, every request after the last connect
                socks.append(socket.create_connection((HOST, srv.port), timeout=10.0))
            pids = [ask_pid(s) for s in socks]
            moved += sum(ask_pid(s) != pid for s, pid in zip(socks, pids, strict=True))
        finally:
            for s in socks:
                s.close()
        per = sorted(Counter(pids).values(), reverse=True)
        per += [0] * (srv.workers - len(per))
        rounds.append(per)
        splits.append("/".join(map(str, per)))
        time.sleep(0.3)  # let the closes reach the server before the next burst
    ours = tree_cpu_s(srv.proc.pid) - srv0 + time.process_time() - own0
    return {
        "other_cores": max(0.0, (busy_cpu_s() - all0 - ours) / (time.monotonic() - t0)),
        "spread": rounds,
        "split": " ".join(splits),
        "max_share": max(max(r) / n for r in rounds),
        "errors": moved,
        "load_command": f"tools/bench: {args.spread_rounds} x ({n} connects back to back, "
        f"then {PID_REQUEST!r} twice on each)",
    }
