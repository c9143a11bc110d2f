"""Exceptions that carry their wire meaning.

A protocol error knows the HTTP status it should be answered with, so turning an error into a
response is an attribute lookup, not an ``isinstance`` ladder (see h11's ``error_status_hint``).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke HTTP framing or a limit; the connection cannot go on.

    Attributes:
        status: the status to answer with when no response has started (400, 413, 414, 431, 501).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class StreamStateError(RuntimeError):
    """A stream method was called when it makes no sense (e.g. headers written twice)."""
