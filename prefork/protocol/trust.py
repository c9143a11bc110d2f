"""Which peers may speak for a client: ``--forwarded-allow-ips`` (docs/scale-out.md).

A peer named here may send a PROXY protocol header and forwarded headers (``X-Forwarded-*``,
RFC 7239 ``Forwarded``); anyone else's are refused or ignored. The list is comma-separated:

* an address (``10.0.0.7``, ``::1``) or a network in CIDR notation (``10.0.0.0/8``, ``fd00::/8``);
* ``unix`` (nginx spells it ``unix:``): a peer on a Unix socket, which has no address;
* ``*``: everyone.

An IPv4 address seen over an IPv6 socket (``::ffff:10.0.0.7``) is matched as the IPv4 address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT = "127.0.0.1,::1,unix"


class TrustedPeers:
    """A parsed allow list; ``host in peers`` asks whether a peer's address is trusted.

    ``host`` is the first item of a peername (a ``str``), or ``None``/``""`` for a peer on a
    Unix socket. Immutable and hashable, so it can be an option's value.
    """

    __slots__ = ("_contains", "_networks", "everyone", "spec", "unix")

    def __init__(self, spec: str | Iterable[str]) -> None:
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        entries = [item.strip() for item in items if item.strip()]
        self.spec = ",".join(entries)
        self.everyone = "*" in entries
        self.unix = any(e in ("unix", "unix:") for e in entries)
        networks: list[Network] = []
        for entry in entries:
            if entry in ("*", "unix", "unix:"):
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address, a CIDR network, 'unix' or '*'"
                ) from None
        self._networks = tuple(networks)
        self._contains = lru_cache(maxsize=256)(self._lookup)

    def __contains__(self, host: object) -> bool:
        if self.everyone:
            return True
        if not host:
            return self.unix
        if not isinstance(host, str):
            return False
        return self._contains(host)

    def _lookup(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrustedPeers) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"TrustedPeers({self.spec!r})"

    def __str__(self) -> str:
        return self.spec

    def __reduce__(self) -> tuple[type[TrustedPeers], tuple[str]]:
        return TrustedPeers, (self.spec,)
