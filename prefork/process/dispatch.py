"""Dispatch policy: which worker gets each accepted connection. Pure bookkeeping, no I/O.

Least outstanding connections among the *ready* workers of the current generation (older
generations only while no current one is ready, during a reload), ties broken round-robin.
Workers report closes, so "outstanding" stays true. A worker with a batch it has not
acknowledged yet is treated as busy: a blocked event loop cannot ack, and the ack is the
only signal that tells a worker stuck in CPU work from an idle one (docs/master.md: on a
skewed load, close reports alone gave a p99 of 11 ms against 6 ms for a shared accept socket).

The master keeps its copy of every connection until the batch is acknowledged; when a worker
dies first, :meth:`Dispatcher.remove` returns those connections to hand out again.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Conn = TypeVar("Conn")
POLICIES = ("balanced", "round-robin")
# A worker with an unacknowledged batch counts as this many connections more: enough to steer
# new connections away from a worker whose loop is stuck, bounded so that a worker merely
# slow to be scheduled during a burst is not skipped for the whole burst.
BUSY_PENALTY = 2


@dataclass
class Slot(Generic[Conn]):
    """What the master knows about one worker's load."""

    key: Hashable
    generation: int = 0
    limit: float = math.inf  # most outstanding connections (its server's max_concurrent)
    ready: bool = False
    closing: bool = False
    full: bool = False
    outstanding: int = 0
    total: int = 0
    unacked: dict[int, list[Conn]] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return bool(self.unacked)


class Dispatcher(Generic[Conn]):
    """The worker table and the policy.

    Args:
        per_worker: most outstanding connections a worker may have (its ``max_concurrent``),
            unless :meth:`add` gives it its own limit.
        policy: ``"balanced"`` (the policy above) or ``"round-robin"`` (each eligible worker in
            turn, blind to load: kept to measure what the balanced policy buys).
    """

    def __init__(self, per_worker: float = math.inf, policy: str = "balanced") -> None:
        if policy not in POLICIES:
            raise ValueError(f"dispatch policy must be one of {POLICIES}, got {policy!r}")
        self.per_worker = per_worker
        self.balanced = policy == "balanced"
        self.slots: dict[Hashable, Slot[Conn]] = {}
        self.generation = 0
        self._order: list[Hashable] = []
        self._cursor = 0
        self._next_batch = 1

    # -- the table --------------------------------------------------------------------------

    def add(
        self, key: Hashable, generation: int | None = None, limit: float | None = None
    ) -> Slot[Conn]:
        """A new worker (booting: not eligible until :meth:`ready`).

        Args:
            key: names the worker.
            generation: its generation (default: the current one).
            limit: its ``max_concurrent`` (default: ``per_worker``). A reload may change the
                setting: each worker keeps the limit its server was started with.
        """
        generation = self.generation if generation is None else generation
        limit = self.per_worker if limit is None else limit
        slot = Slot[Conn](key, generation, limit)
        self.slots[key] = slot
        self._order.append(key)
        return slot

    def ready(self, key: Hashable) -> None:
        self.slots[key].ready = True

    def closing(self, key: Hashable) -> None:
        """The worker drains and will exit: it gets no more connections."""
        self.slots[key].closing = True

    def remove(self, key: Hashable) -> list[Conn]:
        """Forget a dead worker; returns the connections it never acknowledged."""
        slot = self.slots.pop(key)
        self._order.remove(key)
        return [conn for batch in slot.unacked.values() for conn in batch]

    def eligible(self, slot: Slot[Conn]) -> bool:
        """Could take a connection now (of any generation: see :meth:`_pick`)."""
        return slot.ready and not slot.closing and not slot.full and slot.outstanding < slot.limit

    def can_accept(self) -> bool:
        """Whether any worker could take a connection now (else leave clients in the backlog)."""
        return any(self.eligible(slot) for slot in self.slots.values())

    @property
    def outstanding(self) -> int:
        return sum(slot.outstanding for slot in self.slots.values())

    # -- the policy --------------------------------------------------------------------------

    def assign(
        self, conns: list[Conn], max_batch: int | None = None
    ) -> tuple[list[tuple[Hashable, int, list[Conn]]], list[Conn]]:
        """Share ``conns`` out: one batch per chosen worker.

        Args:
            conns: the connections waiting, oldest first.
            max_batch: most connections in one batch (one message carries at most
                ``fdpass.MAX_FDS`` descriptors); a worker whose batch is full gets no more in
                this call, and what no worker can take is left.

        Returns:
            ``(batches, left)``: ``(worker key, batch id, connections)`` to send, and the
            connections no worker can take now.
        """
        chosen: dict[Hashable, list[Conn]] = {}
        capped: set[Hashable] = set()
        left: list[Conn] = []
        for i, conn in enumerate(conns):
            key = self._pick(capped)
            if key is None:  # nobody can take more in this call: the rest waits
                left = conns[i:]
                break
            slot = self.slots[key]
            slot.outstanding += 1
            slot.total += 1
            batch = chosen.setdefault(key, [])
            batch.append(conn)
            if max_batch is not None and len(batch) >= max_batch:
                capped.add(key)
        batches = []
        for key, batch in chosen.items():
            batch_id = self._next_batch
            self._next_batch = self._next_batch % 0xFFFFFFFF + 1
            self.slots[key].unacked[batch_id] = batch
            batches.append((key, batch_id, batch))
        return batches, left

    def _pick(self, skip: set[Hashable]) -> Hashable | None:
        order = self._order
        n = len(order)
        best = None
        best_rank: tuple[bool, int, int] | None = None
        for offset in range(n):
            key = order[(self._cursor + offset) % n]
            slot = self.slots[key]
            if key in skip or not self.eligible(slot):
                continue
            # During a reload the new generation is preferred as soon as one of it is ready;
            # until then the old one keeps serving.
            old = slot.generation != self.generation
            load = slot.outstanding + BUSY_PENALTY * slot.busy
            rank = (old, load, offset) if self.balanced else (old, 0, offset)
            if best_rank is None or rank < best_rank:
                best, best_rank = key, rank
        if best is not None:
            self._cursor = (order.index(best) + 1) % n
        return best

    # -- reports ------------------------------------------------------------------------------

    def acked(self, key: Hashable, batch_id: int) -> list[Conn]:
        """The worker took the batch: returns the connections whose master copies can close."""
        slot = self.slots.get(key)
        if slot is None:
            return []
        slot.full = False
        return slot.unacked.pop(batch_id, [])

    def send_failed(self, key: Hashable, batch_id: int) -> list[Conn]:
        """The channel was full: the batch did not leave; returns it for someone else."""
        return self._take_back(key, batch_id)

    def refused(self, key: Hashable, batch_id: int) -> list[Conn]:
        """The worker did not take the batch (closing, at its limit, out of descriptors): it
        gets nothing more until it reports (a close, an ack or a heartbeat); returns the batch
        for someone else, or nothing if the worker is gone (:meth:`remove` returned it)."""
        if key not in self.slots:
            return []
        return self._take_back(key, batch_id)

    def _take_back(self, key: Hashable, batch_id: int) -> list[Conn]:
        slot = self.slots[key]
        slot.full = True
        batch = slot.unacked.pop(batch_id, [])
        slot.outstanding -= len(batch)
        slot.total -= len(batch)
        return batch

    def heartbeat(self, key: Hashable) -> None:
        """The worker's event loop runs: one marked full may be tried again (a worker that
        refused a batch and closes nothing is retried once a heartbeat, not never)."""
        slot = self.slots.get(key)
        if slot is not None:
            slot.full = False

    def closed(self, key: Hashable, count: int) -> None:
        """The worker finished ``count`` connections."""
        slot = self.slots.get(key)
        if slot is not None:
            slot.full = False
            slot.outstanding = max(0, slot.outstanding - count)
