"""Logging set-up for the master and its workers: error log, access log, reopening on USR1.

Log files are opened in append mode by every process that writes them; ``reopen()`` closes the
streams so the next record opens the file again (after logrotate moved it away).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

ACCESS = logging.getLogger("prefork.access")
_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


def _handler(target: str, stream: Any) -> logging.Handler:
    if target == "-":
        return logging.StreamHandler(stream)
    return logging.FileHandler(target, mode="a", encoding="utf-8", delay=False)


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
    for handler in list(ACCESS.handlers):
        ACCESS.removeHandler(handler)
    ACCESS.propagate = False
    if access_log is not None:
        access = _handler(access_log, sys.stdout)
        access.setFormatter(logging.Formatter("%(message)s"))
        ACCESS.addHandler(access)
        ACCESS.setLevel(logging.INFO)
    else:
        ACCESS.setLevel(logging.CRITICAL + 1)


def reopen() -> None:
    """Reopen every log file (after rotation): the next record creates the file again."""
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


def access_line(stream: Any, headers: Any) -> str:
    """One request in the combined log format (Apache/nginx), from the finished stream."""
    peer = stream.peername()
    host = peer[1] if len(peer) > 2 else "-"
    request = f"{headers.get(':method')} {headers.get(':path')} HTTP/{stream.peer_version:g}"
    status = stream.status if stream.status is not None else "-"
    size = stream.bytes_sent or "-"
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
    referer = headers.get("referer", "-")
    agent = headers.get("user-agent", "-")
    return f'{host} - - [{when}] "{request}" {status} {size} "{referer}" "{agent}"'
