"""The kinds of setting (prefork/kinds.py) that name the network: listening addresses (with
their ``proxy+`` mark), address families and the trusted peers of ``--forwarded-allow-ips``."""

from __future__ import annotations

import socket
from typing import Any

from prefork.kinds import Kind


class Addresses(Kind):
    """Listening addresses: ``HOST:PORT``, ``[IPV6]:PORT``, ``unix:PATH`` or ``fd://N``, each
    perhaps marked ``proxy+``; one string or a list. Loaded as a tuple of the strings, each
    checked by :func:`address`."""

    def describe(self) -> str:
        return "list of addresses"

    def check(self, value: Any, label: str) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise TypeError(f"{label} must be a string or a list of strings, got {value!r}")
        if not items:
            raise ValueError(f"{label} must name at least one address")
        for text in items:
            address(text, label)
        return tuple(items)

    def show(self, value: Any) -> str:
        return ", ".join(value)

    def argparse(self) -> dict[str, Any]:
        return {"action": "append"}


PROXY_MARK = "proxy+"


def proxy_marked(text: str) -> tuple[bool, str]:
    """``proxy+ADDRESS`` (a listener whose connections start with a PROXY protocol header)
    -> ``(True, ADDRESS)``; any other address -> ``(False, text)``."""
    if text.startswith(PROXY_MARK):
        return True, text[len(PROXY_MARK) :]
    return False, text


def address(text: str, label: str = "--bind") -> tuple[str, Any, int | None]:
    """``HOST:PORT``/``[V6]:PORT`` -> ``("tcp", host, port)``; ``unix:PATH`` -> ``("unix",
    path, None)``; ``fd://N`` -> ``("fd", N, None)``; a ``proxy+`` mark before any of them is
    passed over (:func:`proxy_marked` reads it).

    Raises:
        ValueError: none of these forms (the message names ``label`` and ``text``).
    """
    where = proxy_marked(text)[1]
    if where.startswith("unix:"):
        if not where[5:]:
            raise ValueError(f"{label} {text!r}: unix: needs a path")
        return "unix", where[5:], None
    if where.startswith("fd://"):
        if not where[5:].isdigit():
            raise ValueError(f"{label} {text!r}: fd:// needs a descriptor number")
        return "fd", int(where[5:]), None
    host, sep, port = where.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{label} {text!r}: expected HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N")
    return "tcp", host, int(port)


FAMILIES = {name: socket.AddressFamily[name] for name in ("AF_INET", "AF_INET6", "AF_UNIX")}


class Family(Kind):
    """An address family: ``"AF_INET"``, ``"AF_INET6"``, ``"AF_UNIX"`` or the constants."""

    def describe(self) -> str:
        return "`AF_INET`, `AF_INET6` or `AF_UNIX`"

    def check(self, value: Any, label: str) -> socket.AddressFamily:
        if isinstance(value, str):
            if value not in FAMILIES:
                raise ValueError(f"{label} must be one of {sorted(FAMILIES)}, got {value!r}")
            return FAMILIES[value]
        if value not in FAMILIES.values():
            raise ValueError(f"{label} must be AF_INET, AF_INET6 or AF_UNIX, got {value!r}")
        return socket.AddressFamily(value)


class Peers(Kind):
    """``--forwarded-allow-ips``: addresses, CIDR networks, ``unix`` or ``*``, comma-separated
    (or a list); checked and kept as a :class:`~prefork.protocol.trust.TrustedPeers`."""

    def describe(self) -> str:
        return "comma-separated addresses, CIDR networks, `unix` or `*`"

    def check(self, value: Any, label: str) -> Any:
        from prefork.protocol.trust import TrustedPeers

        if isinstance(value, TrustedPeers):
            return value
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if not isinstance(value, str):
            raise TypeError(f"{label} must be a string or a list of strings, got {value!r}")
        try:
            return TrustedPeers(value)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None

    def show(self, value: Any) -> str:
        return str(getattr(value, "spec", value))
