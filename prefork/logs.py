"""Logging set-up for the master and its workers: error log, access log, reopening on USR1.

Log files are opened in append mode by every process that writes them; ``reopen()`` closes the
streams so the next record opens the file again (after logrotate moved it away).

The access log is written a line per request, so it is cheap: :func:`access` hands the line
straight to the access handler prefork installed (no ``LogRecord``, no caller lookup, no
``getpid()``), which holds the lines and writes them together, at most 256 of them or
:data:`FLUSH_EVERY` seconds later (a worker also flushes at every heartbeat, and at exit);
the time in a line is formatted once per second. An access logger that someone else
configured gets the lines through ``logging`` as before.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

ACCESS = logging.getLogger("prefork.access")
_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
FLUSH_EVERY = 1.0  # seconds an access line may wait in memory
_HOLD = 256  # access lines held at most


def _handler(target: str, stream: Any) -> logging.Handler:
    if target == "-":
        return logging.StreamHandler(stream)
    return logging.FileHandler(target, mode="a", encoding="utf-8", delay=False)


class _Held(logging.StreamHandler):
    """Holds the lines given to :meth:`line` (and the records given to ``emit``) and writes
    them together at the next :meth:`flush`, which comes when enough are held, when the
    oldest is :data:`FLUSH_EVERY` old, and from ``logging.shutdown()`` at exit."""

    _since = 0.0

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._lines: list[str] = []

    def line(self, text: str) -> None:
        with self.lock:  # type: ignore[union-attr]  # emit() from another thread: no line lost
            lines = self._lines
            if not lines:
                self._since = time.monotonic()
            lines.append(text)
            if len(lines) >= _HOLD or time.monotonic() - self._since >= FLUSH_EVERY:
                self.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.line(self.format(record))
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            lines, self._lines = self._lines, []
            if self.stream is not None:
                if lines:
                    self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
        finally:
            self.release()


class _HeldFile(_Held, logging.FileHandler):
    """The held access log in a file (``FileHandler.close`` flushes it first)."""

    def __init__(self, path: str) -> None:
        logging.FileHandler.__init__(self, path, mode="a", encoding="utf-8", delay=False)
        self._lines = []


_access: _Held | None = None  # the access handler prefork installed, while it is the only one


def configure(level: str = "info", error_log: str = "-", access_log: str | None = None) -> None:
    """Install prefork's handlers: errors to ``error_log`` (``-``: stderr), requests to
    ``access_log`` (``-``: stdout; None: no access log).

    Raises:
        ValueError: unknown level. OSError: a log file cannot be opened.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    errors = _handler(error_log, sys.stderr)
    errors.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S %z"))
    root.addHandler(errors)
    root.setLevel(numeric)
    global _access
    for handler in list(ACCESS.handlers):
        ACCESS.removeHandler(handler)
    ACCESS.propagate = False
    _access = None
    if access_log is not None:
        access = _Held(sys.stdout) if access_log == "-" else _HeldFile(access_log)
        access.setFormatter(logging.Formatter("%(message)s"))
        ACCESS.addHandler(access)
        ACCESS.setLevel(logging.INFO)
        _access = access
    else:
        ACCESS.setLevel(logging.CRITICAL + 1)


def reopen() -> None:
    """Reopen every log file (after rotation): the next record creates the file again."""
    flush_access()  # the held lines belong to the old file
    for logger in (logging.getLogger(), ACCESS):
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    if handler.stream is not None:
                        handler.stream.close()
                    handler.stream = handler._open()
                finally:
                    handler.release()


def access(line: str) -> None:
    """Write one access log line (see the module's docstring)."""
    handler = _access
    if handler is not None and ACCESS.handlers == [handler]:
        handler.line(line)
    else:
        ACCESS.info(line)


def flush_access() -> None:
    """Write the access lines held, if any (a worker calls it at every heartbeat)."""
    if _access is not None and _access._lines:
        _access.flush()


_when_at = 0
_when = ""


def _now() -> str:
    """The local time as the combined log format writes it, formatted once per second."""
    global _when_at, _when
    now = int(time.time())
    if now != _when_at:
        _when_at, _when = now, time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
    return _when


def access_line(stream: Any, headers: Any) -> str:
    """One request in the combined log format (Apache/nginx), from the finished stream."""
    peer = stream.peername()
    host = peer[1] if len(peer) > 2 else "-"
    request = f"{headers.get(':method')} {headers.get(':path')} HTTP/{stream.peer_version:g}"
    status = stream.status if stream.status is not None else "-"
    size = stream.bytes_sent or "-"
    referer = headers.get("referer", "-")
    agent = headers.get("user-agent", "-")
    return f'{host} - - [{_now()}] "{request}" {status} {size} "{referer}" "{agent}"'
