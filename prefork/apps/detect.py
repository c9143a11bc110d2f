"""Which application interface a callable speaks: ``--interface auto`` (pure, no I/O).

* the stream API: a coroutine function ``async def onstream(server, stream)``;
* ASGI 3: a coroutine function, or an object with an ``async def __call__``, taking
  ``(scope, receive, send)``;
* WSGI (PEP 3333): a plain callable taking ``(environ, start_response)``.

The parameters are counted with :func:`inspect.signature`: two for the stream API and WSGI,
three for ASGI (``self`` of a bound ``__call__`` is not counted). A callable that fits none, or
whose signature cannot say (``*args``), is :class:`InterfaceError`, which names
``--interface`` so the user can say it.
"""

from __future__ import annotations

import inspect
from typing import Any

INTERFACES = ("auto", "stream", "asgi", "wsgi")


class InterfaceError(ValueError):
    """The application's interface cannot be told from the callable."""


def detect(app: Any, name: str = "the app") -> str:
    """``"stream"``, ``"asgi"`` or ``"wsgi"`` for ``app``.

    Raises:
        InterfaceError: not callable, an ASGI 2 class, or a signature that fits no interface
            (the message says to pass ``--interface``).
    """
    if not callable(app):
        raise InterfaceError(f"{name} is not callable (got {type(app).__name__})")
    if inspect.isclass(app):
        raise InterfaceError(
            f"{name} is a class: an ASGI 2 application, or a factory (use --factory); "
            "prefork runs ASGI 3, WSGI and the stream API"
        )
    is_async = _is_async(app)
    count = _positional(app)
    if count is None:
        raise InterfaceError(
            f"cannot tell the interface of {name} from its signature: pass "
            "--interface stream|asgi|wsgi"
        )
    if is_async and count == 2:
        return "stream"
    if is_async and count == 3:
        return "asgi"
    if not is_async and count == 2:
        if _names(app)[:2] == ["server", "stream"]:  # the stream API without its async
            raise InterfaceError(
                f"{name} takes (server, stream) but is not async: "
                "async def onstream(server, stream)"
            )
        return "wsgi"
    kind = "an async" if is_async else "a plain"
    raise InterfaceError(
        f"{name} is {kind} callable of {count} argument(s): none of stream (async, server and "
        "stream), ASGI 3 (async, scope receive send) or WSGI (plain, environ start_response); "
        "pass --interface to say which"
    )


def _is_async(app: Any) -> bool:
    if inspect.iscoroutinefunction(app):
        return True
    # an object with ``async def __call__``; a bound method's __func__ is checked too
    call = type(app).__call__
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(app, "__func__", None)
    )


def _names(app: Any) -> list[str]:
    try:
        return list(inspect.signature(app).parameters)
    except (TypeError, ValueError):
        return []


def _positional(app: Any) -> int | None:
    """How many positional arguments ``app`` takes; None when ``*args`` makes it unknown."""
    try:
        params = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for param in params:
        if param.kind is param.VAR_POSITIONAL:
            return None
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
    return count
