"""The master's CPU time per handed-off connection, at a fixed rate of new connections.

    python tools/handoff_cpu.py [--rate 500] [--connections 5000] [--rounds 3] [-- PREFORK-ARGS]

Starts ``prefork --workers 1`` with the bundled hello app (master and worker pinned to CPU 0 with
taskset, the client to CPU 1), then opens ``--connections`` new connections at ``--rate`` per
second, one ``GET`` with ``Connection: close`` each, and reads the master's own user + system CPU
time from /proc before and after (not its workers'). Prints microseconds per connection, the
median of ``--rounds`` rounds, for the master and for the worker. A fixed rate below saturation
is the hand-off's worst case: each connection travels alone, so nothing is shared by a batch.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(REQUEST)
        while sock.recv(65536):
            pass


def drive(port: int, count: int, rate: float) -> float:
    """Open ``count`` connections at ``rate`` per second; the seconds it took."""
    start = time.monotonic()
    for i in range(count):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        one(port)
    return time.monotonic() - start


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"prefork exited with {proc.returncode}")
        try:
            one(port)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("prefork did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("extra", nargs="*", help="more prefork arguments (after --)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(args.client_cpu)})
    port = free_port()
    argv = ["taskset", "-c", args.server_cpu, sys.executable, "-m", "prefork", "--workers", "1",
            "--bind", f"127.0.0.1:{port}", *args.extra, "examples/hello.py:reply"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        master = psutil.Process(proc.pid)
        (worker,) = master.children()
        drive(port, min(500, args.connections), args.rate)  # warm up
        rows = []
        for _ in range(args.rounds):
            m0, w0 = cpu_s(master.pid), cpu_s(worker.pid)
            took = drive(port, args.connections, args.rate)
            m1, w1 = cpu_s(master.pid), cpu_s(worker.pid)
            rows.append((1e6 * (m1 - m0) / args.connections, 1e6 * (w1 - w0) / args.connections))
            print(
                f"  {args.connections} connections in {took:.1f} s: master "
                f"{rows[-1][0]:.1f} us, worker {rows[-1][1]:.1f} us per connection",
                flush=True,
            )
        master_us = statistics.median(r[0] for r in rows)
        worker_us = statistics.median(r[1] for r in rows)
        print(f"median of {args.rounds}: master {master_us:.1f} us, worker {worker_us:.1f} us "
              f"per connection at {args.rate:g}/s")  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
