"""The work every multi-process benchmark app does, shared so prefork, ASGI and WSGI do the same.

Routes (the path only; query strings are ignored):
  /burn   burn BURN_S of this thread's CPU time (time.thread_time busy loop), then hello
  /pid    this process's pid, e.g. b"12345\\n" (not counted)
  other   b"Hello world!\\n"
Every response is 200 text/plain with Content-Length.

Per-process request counts, for the per-worker share: when BENCH_COUNT_DIR is set, each process
mmaps its own 16-byte file ``$BENCH_COUNT_DIR/<pid>.cnt`` (two little-endian u64: requests,
burns; /pid is not counted) and updates it on every request. A shared file mapping is visible to
the reader at once, without a flush, an exit hook or a syscall per request, and it survives
however the process ends; tools/bench reads the files before and after a run and subtracts.
At import the process also creates ``<pid>.ready`` (all three servers import the app in the
worker, never in the master), so tools/bench can wait until every worker has loaded the app.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time

BODY = b"Hello world!\n"
BURN_S = 0.005
COUNT_DIR = os.environ.get("BENCH_COUNT_DIR")
_FORMAT = struct.Struct("<QQ")

_lock = threading.Lock()  # gunicorn gthread runs the app in several threads
_map: mmap.mmap | None = None
_requests = 0
_burns = 0


def burn(seconds: float = BURN_S) -> None:
    """Spin until this thread has used `seconds` of CPU (not wall-clock) time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _touch_ready() -> None:
    if COUNT_DIR:
        with open(os.path.join(COUNT_DIR, f"{os.getpid()}.ready"), "wb"):
            pass


def _forget() -> None:
    """In a forked child: start counting afresh under the child's own pid."""
    global _map, _requests, _burns
    _map, _requests, _burns = None, 0, 0
    _touch_ready()


def count(burned: bool) -> None:
    global _map, _requests, _burns
    if not COUNT_DIR:
        return
    with _lock:
        if _map is None:
            path = os.path.join(COUNT_DIR, f"{os.getpid()}.cnt")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, _FORMAT.size)
                _map = mmap.mmap(fd, _FORMAT.size)
            finally:
                os.close(fd)
        _requests += 1
        _burns += burned
        _FORMAT.pack_into(_map, 0, _requests, _burns)


def read_counts(directory: str | os.PathLike[str]) -> dict[int, tuple[int, int]]:
    """{pid: (requests, burns)} from every count file in `directory` (used by tools/bench)."""
    counts = {}
    for name in os.listdir(directory):
        if name.endswith(".cnt"):
            with open(os.path.join(directory, name), "rb") as f:
                data = f.read(_FORMAT.size)
            if len(data) == _FORMAT.size:
                counts[int(name[:-4])] = _FORMAT.unpack(data)
    return counts


def respond(path: str) -> bytes:
    """Do the work for `path` and return the response body."""
    if path == "/pid":
        return f"{os.getpid()}\n".encode()
    burned = path == "/burn"
    if burned:
        burn()
    count(burned)
    return BODY


os.register_at_fork(after_in_child=_forget)
_touch_ready()
