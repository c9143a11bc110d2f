"""The master with real worker processes: ``python -m prefork`` in its own session, real signals,
real sockets on 127.0.0.1. Every process is stopped by process group in teardown
(tests/master_helpers.py); waits are polls with deadlines.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import threading
import time
from collections import defaultdict

import psutil

from tests.helpers import read_response, wait_until
from tests.master_helpers import (
    alive,
    app,
    free_port,
    get,
    listening_ports,
    pid_of,
    raw_get,
    run_prefork,
)

# -- serving --------------------------------------------------------------------------------------


def test_two_workers_serve_and_only_the_master_listens(start_master):
    master = start_master("pid", workers=2)
    workers = master.wait_workers(2)
    seen = set()
    for _ in range(40):
        status, body = get(master.port)
        assert status == 200
        seen.add(pid_of(body))
    assert seen == set(workers), "new connections must be spread over both workers"
    assert master.pid not in seen
    assert listening_ports(master.pid) == {master.port}
    for pid in workers:
        assert master.port not in listening_ports(pid), f"worker {pid} holds the listener"
        # nor any other socket bound to the port in a listening state
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            assert conn.status != psutil.CONN_LISTEN, conn


def test_every_connection_reaches_exactly_one_worker(start_master):
    """N connections from a few threads: each gets exactly one response, and each worker's own
    request counter (in the body) runs without gaps or repeats: no connection was handed to
    two workers, none was lost, none answered twice."""
    master = start_master("pid", workers=2)
    workers = master.wait_workers(2)
    n_threads, per_thread = 4, 60
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(per_thread):
            try:
                status, body, raw = raw_get(master.port)
                assert status == 200
                assert raw.count(b"HTTP/1.1 ") == 1, raw
                pid, count = map(int, body.split())
                with lock:
                    results.append((pid, count))
            except BaseException as exc:
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(results) == n_threads * per_thread
    by_worker: dict[int, list[int]] = defaultdict(list)
    for pid, count in results:
        by_worker[pid].append(count)
    assert set(by_worker) <= set(workers)
    for pid, counts in by_worker.items():
        # contiguous and without repeats (the readiness probe may have taken the first ones)
        first = min(counts)
        assert first <= 3
        assert sorted(counts) == list(range(first, first + len(counts))), pid


def test_sigkill_a_worker_under_load_is_replaced_and_no_request_fails(start_master):
    """A client does ~200 requests (keep-alive runs of 5 and single new connections). Midway it
    SIGKILLs the worker that is *not* serving its current connection, and goes on at once (new
    connections during the reap window must not be lost). Nothing may fail; a new worker appears
    and serves."""
    master = start_master("pid", workers=2)
    original = set(master.wait_workers(2))
    errors: list[str] = []
    served: list[int] = []
    victim: list[int] = []
    total = 200

    def client() -> None:
        done = 0
        while done < total:
            conn = http.client.HTTPConnection("127.0.0.1", master.port, timeout=5)
            try:
                keep_alive = (done // 5) % 2 == 0
                for _ in range(5 if keep_alive else 1):
                    headers = {} if keep_alive else {"Connection": "close"}
                    conn.request("GET", "/", headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        errors.append(f"request {done}: status {resp.status}")
                    pid = pid_of(body)
                    served.append(pid)
                    done += 1
                    if done == 60 and not victim:
                        other = (original - {pid}).pop()
                        victim.append(other)
                        os.kill(other, signal.SIGKILL)
            except Exception as exc:
                errors.append(f"request {done}: {exc!r}")
                done += 1
            finally:
                conn.close()

    thread = threading.Thread(target=client)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "client hung"
    assert victim, "the kill never happened"
    assert errors == []
    assert len(served) == total
    (killed,) = victim
    wait_until(lambda: not alive(killed), 5, "the killed worker to be gone")
    workers = set(master.wait_workers(2, timeout=5))
    new = workers - original
    assert len(new) == 1 and killed not in workers
    # the replacement takes connections
    seen = {pid_of(get(master.port)[1]) for _ in range(20)}
    assert new <= seen


def test_connections_handed_to_a_dead_worker_go_to_another(start_master):
    """A stopped worker (SIGSTOP) cannot acknowledge what the master sends it; the master keeps
    its copies of those connections (its fd count shows them). When the worker is then
    SIGKILLed, the connections it never took must be served by another worker, not lost."""
    master = start_master("pid", workers=2)
    stopped, other = master.wait_workers(2)
    master_proc = psutil.Process(master.pid)
    baseline = master_proc.num_fds()
    os.kill(stopped, signal.SIGSTOP)
    n = 6
    answers: dict[int, tuple[int, int] | BaseException] = {}
    lock = threading.Lock()

    def client(i: int, sent: threading.Event) -> None:
        result: tuple[int, int] | BaseException
        try:
            with socket.create_connection(("127.0.0.1", master.port), timeout=10) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                sent.set()
                data = read_response(sock)
            head, _, body = data.partition(b"\r\n\r\n")
            result = (int(head.split(b" ", 2)[1]), pid_of(body))
        except BaseException as exc:
            result = exc
        finally:
            sent.set()
        with lock:
            answers[i] = result

    threads = []
    for i in range(n):
        sent = threading.Event()
        thread = threading.Thread(target=client, args=(i, sent))
        thread.start()
        threads.append(thread)
        assert sent.wait(5)

    def all_accounted() -> bool:
        # each connection is answered (by the running worker) or held by the master, unacked
        with lock:
            return len(answers) + master_proc.num_fds() - baseline == n

    wait_until(all_accounted, 5, "every connection answered or held for the stopped worker")
    with lock:
        assert len(answers) < n, "the stopped worker was never given a connection"
        assert all(a == (200, other) for a in answers.values()), answers
    os.kill(stopped, signal.SIGKILL)
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)
    results = list(answers.values())
    assert len(results) == n
    assert all(isinstance(a, tuple) and a[0] == 200 and a[1] != stopped for a in results), results
    wait_until(lambda: master_proc.num_fds() <= baseline, 5, "the master to close its copies")


def test_sigkill_master_workers_exit(start_master):
    master = start_master("hello", workers=2)
    workers = [psutil.Process(pid) for pid in master.wait_workers(2)]
    # a client with an idle keep-alive connection must not keep its worker alive either
    with socket.create_connection(("127.0.0.1", master.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200")
        os.kill(master.pid, signal.SIGKILL)
        master.proc.wait(5)
        start = time.monotonic()
        wait_until(lambda: not any(alive(w.pid) for w in workers), 5, "orphaned workers to exit")
    assert time.monotonic() - start < 5


def test_term_during_long_requests_they_complete_and_master_exits_0(start_master):
    master = start_master("slow", "--graceful-timeout", "8", workers=2)
    master.wait_workers(2)
    n = 4
    results: list[tuple[int, bytes, float]] = []
    errors: list[BaseException] = []
    in_flight = threading.Barrier(n + 1, timeout=10)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", master.port, timeout=10)
        try:
            start = time.monotonic()
            conn.request("GET", "/?ms=1000")
            resp = conn.getresponse()  # headers come first: the request is in a worker
            in_flight.wait()
            body = resp.read()
            results.append((resp.status, body, time.monotonic() - start))
        except BaseException as exc:
            errors.append(exc)
            in_flight.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    in_flight.wait()
    master.signal(signal.SIGTERM)
    code = master.wait(8)
    for t in threads:
        t.join(10)
    assert errors == []
    assert [(s, b) for s, b, _ in results] == [(200, b"slept 1000\n")] * n
    assert all(elapsed >= 0.9 for _, _, elapsed in results)
    assert code == 0
    # the listener is gone with the master
    assert not alive(master.pid)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", master.port)) != 0


def test_term_new_connections_refused_while_draining(start_master):
    master = start_master("slow", "--graceful-timeout", "8", workers=1)
    conn = http.client.HTTPConnection("127.0.0.1", master.port, timeout=10)
    try:
        conn.request("GET", "/?ms=1500")
        resp = conn.getresponse()
        master.signal(signal.SIGTERM)

        def refused() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", master.port)) != 0

        wait_until(refused, 5, "the listener to close after TERM")
        assert master.proc.poll() is None  # still draining the in-flight request
        assert resp.read() == b"slept 1500\n"
    finally:
        conn.close()
    assert master.wait(8) == 0


def test_ttin_adds_a_worker_ttou_removes_one(start_master):
    master = start_master("pid", workers=2)
    before = set(master.wait_workers(2))
    master.signal(signal.SIGTTIN)
    three = set(master.wait_workers(3, timeout=8))
    assert before < three
    assert len(three - before) == 1
    # the added worker takes new connections
    seen = {pid_of(get(master.port)[1]) for _ in range(30)}
    assert seen == three
    master.signal(signal.SIGTTOU)
    two = set(master.wait_workers(2, timeout=8))
    assert two < three
    master.signal(signal.SIGTTOU)
    one = set(master.wait_workers(1, timeout=8))
    assert one < two
    for _ in range(5):
        status, body = get(master.port)
        assert status == 200 and pid_of(body) in one
    assert master.proc.poll() is None


def test_usr1_reopens_logs_in_master_and_workers(start_master, tmp_path):
    error_log = tmp_path / "error.log"
    access_log = tmp_path / "access.log"
    master = start_master(
        "pid",
        "--error-log",
        str(error_log),
        "--access-log",
        str(access_log),
        "--log-level",
        "info",
        workers=2,
        wait=False,
    )
    master.log_path = error_log
    master.wait_serving()
    workers = master.wait_workers(2)
    os.rename(error_log, tmp_path / "error.log.1")
    os.rename(access_log, tmp_path / "access.log.1")
    old_error_size = (tmp_path / "error.log.1").stat().st_size
    master.signal(signal.SIGUSR1)
    wait_until(error_log.exists, 5, "the master to reopen its error log")

    def worker_lines_in_new_log() -> bool:
        # new connections go round to both workers; each logs a line naming its pid
        get(master.port, "/?log=1")
        text = master.log()
        return all(f"app log line from worker {pid}" in text for pid in workers)

    wait_until(worker_lines_in_new_log, 8, "both workers to write to the new error log")
    wait_until(access_log.exists, 5, "the workers to reopen the access log")
    get(master.port, "/after-rotation")
    wait_until(lambda: "/after-rotation" in access_log.read_text(), 5, "access line in new file")
    assert "/after-rotation" not in (tmp_path / "access.log.1").read_text()
    # the master writes to the new file too
    master.signal(signal.SIGTTIN)

    def new_worker_ready_in_new_log() -> bool:
        added = set(master.workers()) - set(workers)
        text = master.log()
        return bool(added) and all(f"worker {pid} ready" in text for pid in added)

    wait_until(new_worker_ready_in_new_log, 8, "the master to log the added worker")
    text = master.log()
    assert re.search(rf"\[{master.pid}\] \[INFO\] .*TTIN", text), text
    # nothing logged after the rotation went to the old file
    old = (tmp_path / "error.log.1").read_text()
    assert "app log line from worker" not in old[old_error_size:]
    assert "TTIN" not in old


def test_master_fd_count_stays_flat_over_2000_connections(start_master):
    master = start_master("hello", workers=2)
    master.wait_workers(2)
    proc = psutil.Process(master.pid)
    for _ in range(10):
        assert raw_get(master.port)[0] == 200
    baseline = proc.num_fds()
    errors: list[BaseException] = []
    ok = [0]
    lock = threading.Lock()

    def client(count: int) -> None:
        for _ in range(count):
            try:
                status, body, _ = raw_get(master.port)
                assert status == 200 and body == b"hello\n"
                with lock:
                    ok[0] += 1
            except BaseException as exc:
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=client, args=(500,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert ok[0] == 2000
    wait_until(lambda: proc.num_fds() <= baseline + 3, 5, f"master fds back near {baseline}")
    assert abs(proc.num_fds() - baseline) <= 3


def test_silent_worker_is_killed_and_replaced(start_master):
    master = start_master("cpuburn", "--timeout", "1", workers=2)
    original = set(master.wait_workers(2))
    failed: list[BaseException] = []

    def burn() -> None:
        try:
            get(master.port, "/?ms=3000", timeout=10)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=burn)
    started = time.monotonic()
    thread.start()
    pattern = re.compile(r"\[CRITICAL\] .*worker (\d+)")
    match = wait_until(lambda: pattern.search(master.log()), 6, "a CRITICAL line")
    victim = int(match.group(1))
    assert victim in original
    wait_until(lambda: not alive(victim), 5, f"worker {victim} to be killed")
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"killed after {elapsed:.1f} s, the busy loop lasts 3 s"
    thread.join(10)
    assert len(failed) == 1  # the burning request died with its worker
    now = set(master.wait_workers(2, timeout=5))
    assert victim not in now and len(now - original) == 1
    assert re.search(rf"worker {victim} .*SIGABRT", master.log()), master.log()
    for _ in range(4):
        status, body = get(master.port, "/?ms=0")
        assert status == 200 and pid_of(body) in now
    assert master.proc.poll() is None


def test_silent_worker_ignoring_sigabrt_gets_sigkill(start_master):
    master = start_master("cpuburn", "--timeout", "1", workers=1)
    (victim,) = master.wait_workers(1)
    failed: list[BaseException] = []

    def burn() -> None:
        try:
            get(master.port, "/?ms=7000&ignore_abrt=1", timeout=10)
        except BaseException as exc:  # expected: its worker is killed
            failed.append(exc)

    thread = threading.Thread(target=burn)
    started = time.monotonic()
    thread.start()
    wait_until(lambda: f"worker {victim} silent" in master.log(), 6, "the CRITICAL line")
    wait_until(lambda: not alive(victim), 6, f"worker {victim} to be killed")
    assert time.monotonic() - started < 7, "it ran to the end of its busy loop"
    thread.join(10)
    assert len(failed) == 1
    wait_until(lambda: re.search(rf"worker {victim} .*SIGKILL", master.log()), 3, "SIGKILL")
    (replacement,) = master.wait_workers(1, timeout=5)
    assert replacement != victim
    assert get(master.port, "/?ms=0") == (200, f"{replacement}\n".encode())


def test_app_that_fails_to_import_stops_the_master(tmp_path):
    port = free_port()
    start = time.monotonic()
    result = run_prefork(["-w", "1", "-b", f"127.0.0.1:{port}", app("broken")], timeout=15)
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    assert elapsed < 5
    assert "ModuleNotFoundError" in result.stderr
    assert "prefork_no_such_module_for_tests" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    # nothing half-started: the port is free again
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_all_workers_failing_to_import_at_once(start_master):
    """Every worker has exited with the boot-error status before the master reaps any: the
    master must still stop cleanly with status 1 and the import error (one halt, no traceback)."""
    master = start_master("broken_slow", workers=2, wait=False)
    wait_until(lambda: len(master.workers()) == 2, 10, "two booting workers")  # 1.5 s to live
    workers = [psutil.Process(pid) for pid in master.workers()]
    master.signal(signal.SIGSTOP)
    try:

        def all_exited() -> bool:
            return all(w.status() == psutil.STATUS_ZOMBIE for w in workers)

        wait_until(all_exited, 5, "both workers to fail their import")
    finally:
        master.signal(signal.SIGCONT)
    assert master.wait(5) == 1
    stderr = master.stderr()
    assert "prefork_no_such_module_for_tests" in stderr
    assert "Traceback" not in stderr, stderr


def test_app_not_async_exits_non_zero_with_a_message(tmp_path):
    port = free_port()
    result = run_prefork(["-w", "2", "-b", f"127.0.0.1:{port}", app("notasync")], timeout=15)
    assert result.returncode != 0
    assert "async" in result.stderr
    assert "onstream" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
