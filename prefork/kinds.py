"""The kinds of value a setting takes (prefork/settings.py): each checks a value and names the
setting in its error.

A kind checks a value in two situations:

- ``check(value, label)``: a keyword argument of ``prefork.server.new()``/``listen()``; the
  label is ``"option 'name'"``.
- ``load(value, label)``: a value from the command line (after argparse's ``type``) or
  from a TOML file; the label is the flag (``--workers``) or ``--config: FILE: key``. Choices
  are spelled as words there (``--tls on``), and each kind accepts what TOML can say.

Both return the value to use and raise ``TypeError`` (wrong type) or ``ValueError`` (out of
range) with a message that starts with the label.
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def _type_name(value: Any) -> str:
    return type(value).__name__


def number(text: str) -> int | float:
    """A command-line number: ``8``, ``2.5``, ``inf``."""
    try:
        return int(text)
    except ValueError:
        return float(text)


class Kind(abc.ABC):
    """The interface of every kind; the defaults suit kinds whose values TOML can say as-is."""

    def describe(self) -> str:
        """The kind in a few words, for the settings reference."""
        return "value"

    def argparse(self) -> dict[str, Any]:
        """How the command line takes it: ``add_argument`` keywords (``type``, ``choices``)."""
        return {}

    @abc.abstractmethod
    def check(self, value: Any, label: str) -> Any:
        """``value`` as a library keyword argument: returned (normalised) or TypeError /
        ValueError naming ``label``."""

    def load(self, value: Any, label: str) -> Any:
        return self.check(value, label)

    def show(self, value: Any) -> str:
        """``value`` as the command line or a TOML file would spell it (for docs and help)."""
        return str(value)


@dataclass(frozen=True)
class Int(Kind):
    """An ``int`` (never a ``bool``) from ``minimum`` to ``maximum``."""

    minimum: int = 1
    maximum: int | None = None

    def describe(self) -> str:
        top = f" to {self.maximum}" if self.maximum is not None else ""
        return f"integer, {self.minimum}{top}" if top else f"integer >= {self.minimum}"

    def check(self, value: Any, label: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{label} must be an int, got {_type_name(value)}")
        if value < self.minimum:
            raise ValueError(f"{label} must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{label} must be <= {self.maximum}, got {value!r}")
        return value

    def argparse(self) -> dict[str, Any]:
        return {"type": int}


@dataclass(frozen=True)
class Number(Kind):
    """An ``int`` or ``float`` >= ``minimum``, ``inf`` allowed, NaN not; ``seconds``: as float."""

    minimum: float = 0
    seconds: bool = False

    def describe(self) -> str:
        what = "seconds" if self.seconds else "number"
        return f"{what} >= {self.minimum:g} (`inf`: no limit)"

    def check(self, value: Any, label: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{label} must be a number, got {_type_name(value)}")
        if math.isnan(value) or value < self.minimum:
            raise ValueError(f"{label} must be a number >= {self.minimum}, got {value!r}")
        return float(value) if self.seconds else value

    def argparse(self) -> dict[str, Any]:
        return {"type": number}

    def show(self, value: Any) -> str:
        return "unlimited" if value == math.inf else f"{value:g}"


class Bool(Kind):
    """``True`` or ``False`` (a command-line flag without a value)."""

    def describe(self) -> str:
        return "boolean"

    def check(self, value: Any, label: str) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"{label} must be a bool, got {value!r}")
        return value

    def show(self, value: Any) -> str:
        return "on" if value else "off"

    def argparse(self) -> dict[str, Any]:
        return {"action": "store_true", "default": None}


@dataclass(frozen=True)
class Choice(Kind):
    """One of a fixed set of values, each with a word for the command line and TOML.

    ``error``: what a value outside the set raises in ``check`` (``tls="yes"`` is a type
    mistake, ``version=3`` a value out of range).
    """

    names: Mapping[str, Any]
    error: type[Exception] = ValueError

    def describe(self) -> str:
        if all(word == value for word, value in self.names.items()):
            return "one of " + ", ".join(f"`{w}`" for w in self.names)
        return "one of " + ", ".join(f"`{w}` (`{v!r}`)" for w, v in self.names.items())

    def argparse(self) -> dict[str, Any]:
        return {"choices": tuple(self.names)}

    def check(self, value: Any, label: str) -> Any:
        for allowed in self.names.values():
            # True == 1 == 1.0 in Python: a bool only matches a bool
            if allowed == value and isinstance(allowed, bool) == isinstance(value, bool):
                return allowed
        shown = ", ".join(map(repr, self.names.values()))
        raise self.error(f"{label} must be one of {shown}; got {value!r}")

    def load(self, value: Any, label: str) -> Any:
        if isinstance(value, str):
            if value in self.names:
                return self.names[value]
            raise ValueError(f"{label} must be one of {', '.join(self.names)}; got {value!r}")
        return self.check(value, label)

    def show(self, value: Any) -> str:
        return next((w for w, v in self.names.items() if v == value), str(value))


@dataclass(frozen=True)
class Implementation(Kind):
    """``auto``, the portable implementation, or the fast one, which needs its package (the
    ``prefork[fast]`` extra); ``auto`` picks the fast one when it is installed. Naming the fast
    one without its package is an error at start-up, naming the option."""

    portable: str
    fast: str  # also the name of the package it needs

    def describe(self) -> str:
        return (
            f"`auto`, `{self.portable}` or `{self.fast}` (needs the {self.fast} package: "
            "`pip install 'prefork[fast]'`)"
        )

    def argparse(self) -> dict[str, Any]:
        return {"choices": ("auto", self.portable, self.fast)}

    def check(self, value: Any, label: str) -> str:
        if value not in ("auto", self.portable, self.fast) or not isinstance(value, str):
            raise ValueError(
                f"{label} must be one of 'auto', {self.portable!r}, {self.fast!r}; got {value!r}"
            )
        if value == self.fast and importlib.util.find_spec(self.fast) is None:
            raise ValueError(
                f"{label} {value}: the {self.fast} package is not installed "
                "(pip install 'prefork[fast]')"
            )
        return value


@dataclass(frozen=True)
class Str(Kind):
    """A non-empty ``str`` (``bytes_ok``: or ``bytes``, for paths; ``empty_ok``: may be "")."""

    bytes_ok: bool = False
    empty_ok: bool = False

    def describe(self) -> str:
        return "string"

    def check(self, value: Any, label: str) -> Any:
        if not isinstance(value, str | bytes if self.bytes_ok else str):
            raise TypeError(f"{label} must be a str, got {_type_name(value)}")
        return value

    def load(self, value: Any, label: str) -> str:
        if not isinstance(value, str):
            raise TypeError(f"{label} must be a string, got {_type_name(value)}")
        if not value and not self.empty_ok:
            raise ValueError(f"{label} must not be empty")
        return value


class UrlPath(Kind):
    """An absolute URL path such as ``/healthz``: starts with ``/``, visible ASCII only, no
    query or fragment (RFC 3986 section 3.3), compared as the client sends it."""

    def describe(self) -> str:
        return "URL path, starting with `/`"

    def check(self, value: Any, label: str) -> str:
        if not isinstance(value, str):
            raise TypeError(f"{label} must be a str, got {_type_name(value)}")
        if not value.startswith("/") or not all("!" <= c <= "~" and c not in "?#" for c in value):
            raise ValueError(
                f"{label} must be a path starting with / (visible ASCII, no ? or #), got {value!r}"
            )
        return value


@dataclass(frozen=True)
class Octal(Kind):
    """A permission: an ``int`` up to ``maximum`` or an octal string such as ``"027"``.

    ``int_ok=False``: only the string (a TOML ``umask = 27`` would be read as decimal 27 =
    0o33, not what its author meant).
    """

    maximum: int = 0o7777
    int_ok: bool = True

    def describe(self) -> str:
        text = f'octal string up to "{self.maximum:o}"'
        return f"int or {text}" if self.int_ok else text

    def check(self, value: Any, label: str) -> int:
        if isinstance(value, str):
            try:
                value = int(value, 8)
            except ValueError:
                raise ValueError(f"{label} must be an octal permission, got {value!r}") from None
        elif not self.int_ok:
            raise TypeError(f'{label} must be an octal string such as "027", got {value!r}')
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{label} must be an int, got {_type_name(value)}")
        if not 0 <= value <= self.maximum:
            raise ValueError(
                f"{label} must be a permission from 0 to {self.maximum:#o}, got {value:#o}"
            )
        return value

    def show(self, value: Any) -> str:
        return f"{value:03o}"


# -- kinds that only the library's keyword arguments take ----------------------------------------


@dataclass(frozen=True)
class Function(Kind):
    """A callable; ``is_async``: an ``async def`` (or an object whose ``__call__`` is one)."""

    is_async: bool = False

    def describe(self) -> str:
        return "async callable" if self.is_async else "callable"

    def check(self, value: Any, label: str) -> Callable[..., Any]:
        if not callable(value):
            raise TypeError(f"{label} must be callable")
        if self.is_async and not (
            asyncio.iscoroutinefunction(value) or asyncio.iscoroutinefunction(type(value).__call__)
        ):
            raise TypeError(
                f"{label} must be an async function: async def onstream(server, stream)"
            )
        return value


@dataclass(frozen=True)
class Instance(Kind):
    """An instance of the class at ``path``, or of one at the ``others`` paths (each imported
    when first needed, in that order: OpenSSL is heavy)."""

    path: str
    what: str = ""
    others: tuple[str, ...] = ()

    def describe(self) -> str:
        return " or ".join(f"`{p}`" for p in (self.path, *self.others))

    def check(self, value: Any, label: str) -> Any:
        for path in (self.path, *self.others):
            module, _, name = path.rpartition(".")
            if isinstance(value, getattr(importlib.import_module(module), name)):
                return value
        what = self.what or " or ".join(f"a {p}" for p in (self.path, *self.others))
        raise TypeError(f"{label} must be {what}, got {_type_name(value)}")
