"""Find the application: ``module:callable`` or ``path/to/file.py:callable``.

:func:`load` finds an ``async def onstream(server, stream)``, the stream API. :func:`load_app`
finds any application (``--factory``: the attribute is called to make it), tells its
interface (``--interface auto``: prefork/apps/detect.py) and wraps an ASGI or WSGI app in its
adapter, so the server only ever sees an ``onstream``. Loading happens in each worker (or once
in the master with ``--preload``), so a reload imports fresh code.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefork.apps.detect import InterfaceError, detect


class AppError(Exception):
    """The application cannot be loaded: the message says which module and why."""


def check_spec(spec: str) -> tuple[str, str]:
    """Split ``spec`` into (module or path, attribute) without importing anything.

    Raises:
        AppError: not of the form ``module:callable`` or ``file.py:callable``.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr or not attr.replace(".", "_").isidentifier():
        raise AppError(f"APP must be module:callable or path/to/file.py:callable, got {spec!r}")
    return target, attr


def load(spec: str) -> Callable[..., Any]:
    """Import the module or file and return its ``onstream`` callable (the stream API).

    Raises:
        AppError: import failure (with the original error), missing attribute, or not async.
    """
    obj = find(spec)
    if not (asyncio.iscoroutinefunction(obj) or asyncio.iscoroutinefunction(type(obj).__call__)):
        attr = spec.rpartition(":")[2]
        raise AppError(f"{spec} must be an async function: async def {attr}(server, stream)")
    return obj


def find(spec: str, app_dir: str | None = None) -> Any:
    """Import the module or file of ``spec`` and return the object it names.

    Args:
        app_dir: the directory put first on the import path (default: the current one).

    Raises:
        AppError: import failure (with the original error) or a missing attribute.
    """
    target, attr = check_spec(spec)
    try:
        if target.endswith(".py") or os.sep in target:
            module = _load_file(target)
        else:
            # As gunicorn and uvicorn do: `prefork myapp:onstream` run from the project
            # directory finds myapp, even though the console script's own dir is sys.path[0].
            where = os.path.abspath(app_dir) if app_dir is not None else os.getcwd()
            if where not in sys.path:
                sys.path.insert(0, where)
            module = importlib.import_module(target)
    except AppError:
        raise
    except BaseException as exc:
        raise AppError(f"cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"{target!r} has no attribute {attr!r}") from None
    return obj


@dataclass(frozen=True)
class AppSpec:
    """What a worker loads, from the settings: APP and how to run it."""

    target: str
    interface: str = "auto"
    factory: bool = False
    app_dir: str | None = None
    root_path: str = ""
    lifespan: str = "auto"
    threads: int = 8
    ws_max_size: int = 16777216
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0


@dataclass
class Loaded:
    """An application ready to serve: its ``onstream``, its interface, and for ASGI its
    ``prefork.asgi.Lifespan`` (None when there is none to run)."""

    onstream: Callable[..., Any]
    interface: str
    lifespan: Any = None


def load_app(spec: AppSpec) -> Loaded:
    """Find, make (``factory``) and adapt the application ``spec`` names.

    Raises:
        AppError: it cannot be imported or made, or its interface cannot be told (the
            message names ``--interface``).
    """
    app = find(spec.target, spec.app_dir)
    if spec.factory:
        try:
            app = app()
        except Exception as exc:
            raise AppError(
                f"the factory {spec.target} failed: {type(exc).__name__}: {exc}"
            ) from exc
    interface = spec.interface
    if interface == "auto":
        try:
            interface = detect(app, spec.target)
        except InterfaceError as exc:
            raise AppError(str(exc)) from None
    return _adapt(app, interface, spec)


def _adapt(app: Any, interface: str, spec: AppSpec) -> Loaded:
    if interface == "stream":
        return Loaded(app, interface)
    if interface == "wsgi":
        from prefork import wsgi

        return Loaded(wsgi.onstream(app, threads=spec.threads, root_path=spec.root_path), "wsgi")
    from prefork import asgi

    lifespan = None if spec.lifespan == "off" else asgi.Lifespan(app, spec.lifespan)
    state = lifespan.state if lifespan is not None else None
    onstream = asgi.onstream(
        app,
        root_path=spec.root_path,
        state=state,
        ws_max_size=spec.ws_max_size,
        ws_ping_interval=None if math.isinf(spec.ws_ping_interval) else spec.ws_ping_interval,
        ws_ping_timeout=None if math.isinf(spec.ws_ping_timeout) else spec.ws_ping_timeout,
    )
    return Loaded(onstream, "asgi", lifespan)


def _load_file(path: str) -> Any:
    if not os.path.isfile(path):
        raise AppError(f"cannot import {path!r}: no such file")
    # A private module name: an app file called json.py must not replace the stdlib's json
    # in sys.modules for everything the worker imports after it.
    name = "_prefork_app_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise AppError(f"cannot import {path!r}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)  # the file's siblings import as they would with python FILE
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module
