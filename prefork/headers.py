"""An ordered, multi-valued collection of HTTP header fields (lua-http's ``http.headers``).

Each field is a ``(name, value, never_index)`` triple. The same name may occur several
times (e.g. ``set-cookie``) and the original order is kept, because both matter on the
wire. ``never_index`` marks sensitive values that HPACK must never add to its dynamic
table. HTTP/1 request and status lines travel in the same object as HTTP/2 pseudo-headers
(``:method``, ``:path``, ``:authority``, ``:scheme``, ``:status``, ``:protocol``), always
as strings.

Storage is a list of ``(name, value)`` tuples, a parallel list of ``never_index`` flags and
a dict mapping each name to the list of its positions, so lookups never scan and
:meth:`Headers.items` is a plain list copy. Unlike lua-http, positions are 0-based.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import IO

__all__ = ["NEVER_INDEX_DEFAULTS", "Field", "Headers", "Text"]

Text = str | bytes | bytearray
"""Accepted name/value types; bytes-like values are decoded as latin-1."""

Field = tuple[str, str, bool]
"""One header field: ``(name, value, never_index)``."""

NEVER_INDEX_DEFAULTS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
"""Names whose ``never_index`` flag defaults to ``True``: they usually carry credentials."""


def _to_str(obj: object, arg: str) -> str:
    """Convert a non-``str`` name or value: decode bytes as latin-1, reject anything else."""
    if isinstance(obj, str):
        return str.__str__(obj)  # a str subclass becomes a plain str
    if isinstance(obj, bytes | bytearray):
        return obj.decode("latin-1")
    raise TypeError(f"{arg} must be str or bytes, not {type(obj).__name__}")


def _key(name: object) -> str:
    """Return the index key (lower-cased str) for a lookup by ``name``."""
    return (name if type(name) is str else _to_str(name, "name")).lower()


class Headers:
    """An ordered list of header fields with an index by (lower-case) field name.

    Args:
        fields: Optional iterable of ``(name, value)`` pairs or ``(name, value,
            never_index)`` triples, appended in order (another :class:`Headers` works too).

    Raises:
        TypeError: An item is a str/bytes rather than a pair/triple, or a name or value
            is neither str nor bytes.
        ValueError: An item does not have 2 or 3 elements.
    """

    __slots__ = ("_index", "_never", "_pairs")

    def __init__(
        self, fields: Iterable[tuple[Text, Text] | tuple[Text, Text, bool | None]] | None = None
    ) -> None:
        self._pairs: list[tuple[str, str]] = []
        self._never: list[bool] = []
        self._index: dict[str, list[int]] = {}
        if fields is not None:
            for field in fields:
                if isinstance(field, str | bytes | bytearray):
                    raise TypeError("fields must be (name, value[, never_index]) tuples")
                if not 2 <= len(field) <= 3:
                    raise ValueError(f"field must have 2 or 3 items, got {len(field)}")
                self.append(*field)

    @classmethod
    def of_lowercase(cls, pairs: list[tuple[str, str]], never: list[bool] | None = None) -> Headers:
        """Headers that take ``pairs`` (and ``never``, one flag per pair) as they are.

        For parsers, whose output is already in this form: names are lower-case ``str``
        (HTTP/2 allows no other), values ``str``; nothing is converted or copied, only the
        index is built. The lists become the object's own. Without ``never``, each field
        takes ``never_index``'s default for its name.
        """
        self = cls.__new__(cls)
        index: dict[str, list[int]] = {}
        i = 0
        for name, _ in pairs:
            if name in index:
                index[name].append(i)
            else:
                index[name] = [i]
            i += 1
        if never is None:
            never = [False] * i
            if not NEVER_INDEX_DEFAULTS.isdisjoint(index):
                for name in NEVER_INDEX_DEFAULTS:
                    for position in index.get(name, ()):
                        never[position] = True
        self._pairs = pairs
        self._never = never
        self._index = index
        return self

    def append(self, name: Text, value: Text, never_index: bool | None = None) -> None:
        """Append a field at the end; earlier fields with the same name are kept.

        Nothing is validated here (the HTTP writer does that), so this stays cheap.

        Args:
            name: Field name; lower-cased. ``bytes`` are decoded as latin-1.
            value: Field value. ``bytes`` are decoded as latin-1.
            never_index: Whether the value is sensitive. ``None`` means ``True`` for
                authorization, proxy-authorization, cookie and set-cookie, else ``False``.

        Raises:
            TypeError: ``name`` or ``value`` is neither str nor bytes.
        """
        if type(name) is not str:  # exact-type checks: the cheapest test on this hot path
            name = name.decode("latin-1") if type(name) is bytes else _to_str(name, "name")
        if type(value) is not str:
            value = value.decode("latin-1") if type(value) is bytes else _to_str(value, "value")
        name = name.lower()
        if never_index is None:
            never_index = name in NEVER_INDEX_DEFAULTS
        positions = self._index.get(name)
        if positions is None:
            self._index[name] = [len(self._pairs)]
        else:
            positions.append(len(self._pairs))
        self._pairs.append((name, value))
        self._never.append(never_index)

    def each(self) -> Iterator[Field]:
        """Iterate over all fields in order as ``(name, value, never_index)`` triples."""
        for (name, value), never_index in zip(self._pairs, self._never, strict=True):
            yield name, value, never_index

    __iter__ = each

    def items(self) -> list[tuple[str, str]]:
        """Return a new list of ``(name, value)`` pairs in order (what a writer iterates)."""
        return self._pairs.copy()

    def __len__(self) -> int:
        """Return the number of fields (duplicates count separately)."""
        return len(self._pairs)

    def len(self) -> int:
        """Return the number of fields (same as ``len(headers)``)."""
        return len(self._pairs)

    def has(self, name: Text) -> bool:
        """Return whether at least one field is called ``name`` (case-insensitive).

        Raises:
            TypeError: ``name`` is neither str nor bytes.
        """
        return _key(name) in self._index

    def __contains__(self, name: object) -> bool:
        """``name in headers``: like :meth:`has`, but ``False`` for non-str/bytes objects."""
        return isinstance(name, str | bytes | bytearray) and self.has(name)

    def delete(self, name: Text) -> bool:
        """Remove every field called ``name``; later fields move down.

        Returns:
            ``True`` if at least one field was removed, ``False`` if there was none.
        """
        positions = self._index.get(_key(name))
        if positions is None:
            return False
        gone = set(positions)
        keep = [i for i in range(len(self._pairs)) if i not in gone]
        self._reorder(keep)
        return True

    def geti(self, i: int) -> Field:
        """Return the field at position ``i`` (0-based; negative counts from the end).

        Raises:
            IndexError: ``i`` is out of range.
        """
        name, value = self._pairs[i]
        return name, value, self._never[i]

    def get_as_sequence(self, name: Text) -> tuple[str, ...]:
        """Return the values of all fields called ``name`` in order (``()`` if none)."""
        positions = self._index.get(_key(name), ())
        pairs = self._pairs
        return tuple([pairs[i][1] for i in positions])

    def get(self, name: Text, default: str | None = None) -> str | None:
        """Return the value of the first field called ``name``, or ``default`` if none."""
        positions = self._index.get(_key(name))
        return default if positions is None else self._pairs[positions[0]][1]

    def get_comma_separated(self, name: Text) -> str | None:
        """Return all values of ``name`` joined with ``", "``, or ``None`` if absent."""
        values = self.get_as_sequence(name)
        return ", ".join(values) if values else None

    def modifyi(self, i: int, value: Text, never_index: bool | None = None) -> None:
        """Replace the value and ``never_index`` flag of the field at position ``i``.

        Args:
            i: 0-based position (negative counts from the end).
            value: New value; ``bytes`` are decoded as latin-1.
            never_index: New flag; ``None`` applies the default for the field's name.

        Raises:
            IndexError: ``i`` is out of range.
            TypeError: ``value`` is neither str nor bytes.
        """
        name = self._pairs[i][0]
        if type(value) is not str:
            value = _to_str(value, "value")
        self._pairs[i] = (name, value)
        self._never[i] = name in NEVER_INDEX_DEFAULTS if never_index is None else never_index

    def upsert(self, name: Text, value: Text, never_index: bool | None = None) -> None:
        """Replace the single field called ``name`` in place, or append it if absent.

        Raises:
            ValueError: ``name`` already has several values (which one to replace is
                ambiguous; :meth:`delete` then :meth:`append` instead).
            TypeError: ``name`` or ``value`` is neither str nor bytes.
        """
        key = _key(name)
        positions = self._index.get(key)
        if positions is None:
            self.append(key, value, never_index)
        elif len(positions) > 1:
            raise ValueError(f"cannot upsert multi-valued field {key!r}")
        else:
            self.modifyi(positions[0], value, never_index)

    def sort(self) -> None:
        """Sort in place: pseudo-headers (``:``-prefixed) first, then by name, then value.

        Ties are broken by ``never_index``, ``True`` first, as lua-http does.
        """
        pairs, never = self._pairs, self._never

        def key(i: int) -> tuple[bool, str, str, bool]:
            name, value = pairs[i]
            return not name.startswith(":"), name, value, not never[i]

        self._reorder(sorted(range(len(pairs)), key=key))

    def _reorder(self, order: list[int]) -> None:
        """Keep only the fields at positions ``order``, in that order, and rebuild the index."""
        self._pairs = [self._pairs[i] for i in order]
        self._never = [self._never[i] for i in order]
        index: dict[str, list[int]] = {}
        for pos, (name, _) in enumerate(self._pairs):
            index.setdefault(name, []).append(pos)
        self._index = index

    def clone(self) -> Headers:
        """Return an independent copy: changing one never affects the other."""
        new = Headers.__new__(Headers)
        new._pairs = self._pairs.copy()  # the (name, value) tuples are immutable
        new._never = self._never.copy()
        new._index = {name: positions.copy() for name, positions in self._index.items()}
        return new

    __copy__ = clone

    def dump(self, file: IO[str] | None = None, prefix: str = "") -> None:
        """Write the fields as ``prefix + "name: value"`` lines to ``file`` (default stderr)."""
        out = sys.stderr if file is None else file
        out.writelines(f"{prefix}{name}: {value}\n" for name, value in self._pairs)
        out.flush()

    def __eq__(self, other: object) -> bool:
        """Equal when both hold the same fields (flags included) in the same order."""
        if not isinstance(other, Headers):
            return NotImplemented
        return self._pairs == other._pairs and self._never == other._never

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        """Show the fields; ``never_index`` appears only where it differs from the default."""
        fields = [
            (name, value) if never == (name in NEVER_INDEX_DEFAULTS) else (name, value, never)
            for (name, value), never in zip(self._pairs, self._never, strict=True)
        ]
        return f"{type(self).__name__}({fields!r})"
