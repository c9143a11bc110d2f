"""The health path (``health_path``): a load balancer's check, answered by the server itself.

A request for the health path never reaches the application, is not counted in
``server.requests`` (so it does not bring ``--max-requests`` closer) and is not written to the
access log (a balancer checks every second or two). The answer says whether to send this server
work: ``200 ok`` while it serves, ``503 draining`` once it drains (``Server.drain()``) or closes.
GET and HEAD are answered; any other method gets ``405`` with ``Allow: GET, HEAD``
(RFC 9110 section 15.5.6), since the path belongs to the server, not to the application. The
answer must not be cached (``Cache-Control: no-store``): a cached 200 would hide a drain.
docs/scale-out.md has the operator's side.
"""

from __future__ import annotations

from typing import Any

from prefork.headers import Headers

ALLOWED = ("GET", "HEAD")
_ANSWERS = {  # status, body
    "ok": ("200", b"ok\n"),
    "draining": ("503", b"draining\n"),
    "method": ("405", b"method not allowed\n"),
}


class HealthPath:
    """The ``health_path`` of a server: which requests it answers, and how.

    Args:
        path: the path, as ``health_path`` was checked (``/healthz``).
    """

    __slots__ = ("_with_query", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._with_query = path + "?"

    def matches(self, target: str | None) -> bool:
        """Whether a request's ``:path`` names the health path (a query string aside)."""
        return target is not None and (target == self.path or target.startswith(self._with_query))

    async def answer(self, stream: Any, draining: bool) -> None:
        """Answer ``stream``'s request: 200, 503 while ``draining``, 405 for other methods.

        The request body, if any, is left unread (the connection drops it).
        """
        method = stream.request_headers.get(":method")
        key = "method" if method not in ALLOWED else "draining" if draining else "ok"
        status, body = _ANSWERS[key]
        headers = Headers()
        headers.append(":status", status)
        headers.append("content-type", "text/plain; charset=utf-8")
        headers.append("cache-control", "no-store")
        headers.append("content-length", str(len(body)))
        if key == "method":
            headers.append("allow", ", ".join(ALLOWED))
        head_only = method == "HEAD"
        await stream.write_headers(headers, head_only)
        if not head_only:
            await stream.write_chunk(body, True)
