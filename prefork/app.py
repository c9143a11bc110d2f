"""Find the application: ``module:callable`` or ``path/to/file.py:callable``.

The callable is an ``async def onstream(server, stream)``. Loading happens in each worker
(or once in the master with ``--preload``), so a reload imports fresh code.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any


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
    """Import the module or file and return its ``onstream`` callable.

    Raises:
        AppError: import failure (with the original error), missing attribute, or not async.
    """
    target, attr = check_spec(spec)
    try:
        if target.endswith(".py") or os.sep in target:
            module = _load_file(target)
        else:
            # As gunicorn and uvicorn do: `prefork myapp:onstream` run from the project
            # directory finds myapp, even though the console script's own dir is sys.path[0].
            cwd = os.getcwd()
            if cwd not in sys.path:
                sys.path.insert(0, cwd)
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
    if not (asyncio.iscoroutinefunction(obj) or asyncio.iscoroutinefunction(type(obj).__call__)):
        raise AppError(f"{spec} must be an async function: async def {attr}(server, stream)")
    return obj


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
