"""The dispatch policy (prefork.process.dispatch.Dispatcher): pure bookkeeping, no I/O.

Connections are plain strings here; workers are keys. Each test drives the table the way the
master does (add, ready, assign, acked, closed, send_failed, remove) and checks who gets what.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Hashable

import pytest

from prefork.process.dispatch import BUSY_PENALTY, Dispatcher


def table(*keys: str, per_worker: float = float("inf")) -> Dispatcher[str]:
    d: Dispatcher[str] = Dispatcher(per_worker)
    for key in keys:
        d.add(key)
        d.ready(key)
    return d


def assign_acked(d: Dispatcher[str], conns: list[str]) -> dict[Hashable, list[str]]:
    """Assign and acknowledge at once (idle workers): ``{worker: its connections}``."""
    batches, left = d.assign(conns)
    assert left == []
    out: dict[Hashable, list[str]] = {}
    for key, batch_id, batch in batches:
        assert d.acked(key, batch_id) == batch
        out.setdefault(key, []).extend(batch)
    return out


def owner(d: Dispatcher[str], conn: str) -> Hashable:
    """Assign one connection, acknowledge it, return the worker that got it."""
    (key,) = assign_acked(d, [conn])
    return key


# -- the choice ---------------------------------------------------------------------------------


def test_least_outstanding_wins():
    d = table("a", "b", "c")
    assign_acked(d, ["1", "2", "3"])  # one each
    d.closed("b", 1)  # b: 0 outstanding; a, c: 1
    assert owner(d, "x") == "b"
    assert owner(d, "y") == "c"  # all at 1: a tie, and round-robin continues after b
    d2 = table("a", "b")
    first = owner(d2, "1")
    other = "b" if first == "a" else "a"
    assert owner(d2, "2") == other  # the one with nothing wins over the one with 1


def test_least_outstanding_with_unequal_loads():
    d = table("a", "b", "c")
    got = assign_acked(d, [f"c{i}" for i in range(9)])
    assert {k: len(v) for k, v in got.items()} == {"a": 3, "b": 3, "c": 3}
    d.closed("c", 3)
    d.closed("a", 1)
    # c: 0, a: 2, b: 3 -> c, c (1 < 2), then one each to a and c (tie at 2), then all at 3
    assert [owner(d, "n0"), owner(d, "n1")] == ["c", "c"]
    assert {owner(d, "n2"), owner(d, "n3")} == {"a", "c"}
    assert [d.slots[k].outstanding for k in "abc"] == [3, 3, 3]
    d.closed("b", 2)
    assert owner(d, "n4") == "b"


def test_ties_round_robin():
    d = table("a", "b", "c")
    seq = []
    for i in range(9):
        key = owner(d, f"c{i}")
        seq.append(key)
        d.closed(key, 1)  # every worker back to 0: always a tie
    assert seq == ["a", "b", "c"] * 3


def test_one_batch_per_worker_and_round_robin_within_a_batch():
    d = table("a", "b", "c")
    batches, left = d.assign([f"c{i}" for i in range(7)])
    assert left == []
    assert len({key for key, _, _ in batches}) == len(batches) == 3  # one batch per worker
    sizes = sorted(len(batch) for _, _, batch in batches)
    assert sizes == [2, 2, 3]
    ids = [bid for _, bid, _ in batches]
    assert len(set(ids)) == 3  # batch ids are distinct
    everything = [c for _, _, batch in batches for c in batch]
    assert sorted(everything) == sorted(f"c{i}" for i in range(7))  # each exactly once


def test_busy_worker_skipped_when_an_idle_one_exists():
    d = table("a", "b")
    batches, _ = d.assign(["1"])
    (busy, bid, _) = batches[0]
    idle = "b" if busy == "a" else "a"
    assert d.slots[busy].busy
    # the idle worker now has more outstanding connections, yet is still preferred
    for i in range(3):
        assert owner(d, f"x{i}") == idle
    assert d.slots[idle].outstanding == 3 > d.slots[busy].outstanding
    d.acked(busy, bid)
    assert not d.slots[busy].busy
    assert owner(d, "y") == busy  # acknowledged and least loaded: its turn again


def test_busy_workers_still_used_when_all_are_busy():
    d = table("a", "b")
    _, left = d.assign(["1", "2"])
    assert left == []
    batches2, left2 = d.assign(["3"])
    assert left2 == [] and len(batches2) == 1  # nobody idle: the least loaded busy one


@pytest.mark.parametrize("state", ["closing", "not_ready", "old_generation", "full", "removed"])
def test_ineligible_workers_never_chosen(state):
    d: Dispatcher[str] = Dispatcher()
    d.add("good")
    d.ready("good")
    if state == "not_ready":
        d.add("bad")
    elif state == "old_generation":
        d.add("bad", generation=d.generation - 1)
        d.ready("bad")
    else:
        d.add("bad")
        d.ready("bad")
    if state == "closing":
        d.closing("bad")
    elif state == "full":
        batches, _ = d.assign(["probe1", "probe2"])
        for key, bid, _ in batches:
            if key == "bad":
                d.send_failed(key, bid)
            else:
                d.acked(key, bid)
        d.closed("good", 1)
    elif state == "removed":
        d.remove("bad")
    for i in range(20):
        assert owner(d, f"c{i}") == "good"
    if state != "old_generation":  # an old generation may serve only while no new one is ready
        assert "bad" not in d.slots or not d.eligible(d.slots["bad"])


def test_current_generation_only_once_ready():
    d = table("old1", "old2")
    d.generation = 1
    d.add("new")  # booting
    d.ready("new")
    assert {owner(d, f"c{i}") for i in range(5)} == {"new"}
    d.add("new2")
    d.ready("new2")
    assert {owner(d, f"d{i}") for i in range(6)} == {"new", "new2"}


def test_round_robin_policy_ignores_load():
    d: Dispatcher[str] = Dispatcher(policy="round-robin")
    for key in ("a", "b"):
        d.add(key)
        d.ready(key)
    assert [owner(d, f"c{i}") for i in range(4)] == ["a", "b", "a", "b"]
    d.closed("a", 2)  # a: 0 open, b: 2; round-robin does not care
    assert [owner(d, f"n{i}") for i in range(4)] == ["a", "b", "a", "b"]
    with pytest.raises(ValueError):
        Dispatcher(policy="random")


def test_nobody_eligible_leaves_connections():
    d: Dispatcher[str] = Dispatcher()
    assert not d.can_accept()
    assert d.assign(["1", "2"]) == ([], ["1", "2"])
    d.add("a")  # booting
    assert d.assign(["1"]) == ([], ["1"])
    d.ready("a")
    assert d.can_accept()
    d.closing("a")
    assert not d.can_accept()
    assert d.assign(["1"]) == ([], ["1"])


def test_per_worker_cap():
    d = table("a", "b", per_worker=2)
    batches, left = d.assign([f"c{i}" for i in range(7)])
    assert sorted(left) == ["c4", "c5", "c6"]
    assert {key: len(batch) for key, _, batch in batches} == {"a": 2, "b": 2}
    for key, bid, _ in batches:
        d.acked(key, bid)
    assert not d.can_accept()
    assert d.assign(["z"]) == ([], ["z"])
    d.closed("b", 1)
    assert d.can_accept()
    assert owner(d, "z") == "b"
    assert not d.can_accept()
    assert d.outstanding == 4


def test_each_worker_keeps_the_limit_it_was_added_with():
    """A reload may change max_concurrent: the new generation's workers get the new limit, the
    old ones (their servers started with the old setting) keep theirs while they drain."""
    d: Dispatcher[str] = Dispatcher(per_worker=2)
    d.add("old")
    d.ready("old")
    d.generation = 1
    d.add("new", limit=4)
    d.ready("new")
    batches, left = d.assign([f"c{i}" for i in range(9)])
    assert {key: len(batch) for key, _, batch in batches} == {"new": 4, "old": 2}
    assert left == ["c6", "c7", "c8"]
    assert (d.slots["old"].limit, d.slots["new"].limit) == (2, 4)


def test_max_batch_caps_each_worker_per_call_and_leaves_the_rest():
    """One message carries at most fdpass.MAX_FDS descriptors: assign never makes a batch
    larger than ``max_batch``; what nobody can take in this call is left, in order, and the
    next call hands it out (a worker may have several batches unacknowledged)."""
    d = table("a")
    conns = [f"c{i}" for i in range(600)]
    batches, left = d.assign(conns, max_batch=253)
    assert [(key, len(batch)) for key, _, batch in batches] == [("a", 253)]
    assert left == conns[253:]
    sizes = [253]
    while left:
        batches, left = d.assign(left, max_batch=253)
        sizes += [len(batch) for _, _, batch in batches]
    assert sizes == [253, 253, 94]
    assert d.slots["a"].outstanding == d.slots["a"].total == 600
    assert len(d.slots["a"].unacked) == 3
    two = table("a", "b")
    batches, left = two.assign([f"c{i}" for i in range(10)], max_batch=3)
    assert sorted(len(batch) for _, _, batch in batches) == [3, 3]
    assert left == [f"c{i}" for i in range(6, 10)]
    assert two.assign(["x"], max_batch=None)[1] == []  # None: no cap


# -- the reports ----------------------------------------------------------------------------------


def test_acked_returns_the_batch_to_close():
    d = table("a", "b")
    batches, _ = d.assign(["1", "2", "3", "4"])
    for key, bid, batch in batches:
        assert d.slots[key].unacked == {bid: batch}
        assert d.acked(key, bid) == batch
        assert d.slots[key].unacked == {}
        assert d.acked(key, bid) == []  # a second ack of the same batch gives nothing
        assert d.slots[key].outstanding == len(batch)  # still open in the worker
    assert d.acked("nobody", 1) == []  # a late ack from a removed worker is harmless


def test_send_failed_returns_the_batch_and_marks_full():
    d = table("a", "b")
    batches, _ = d.assign(["1", "2"])
    (key, bid, batch) = batches[0]
    other = "b" if key == "a" else "a"
    assert d.send_failed(key, bid) == batch
    slot = d.slots[key]
    assert slot.full and slot.unacked == {} and slot.outstanding == 0 and slot.total == 0
    # the returned connections go elsewhere; the full worker is skipped until it reports
    got = assign_acked(d, [*batch, "3", "4"])
    assert set(got) == {other}
    d.closed(key, 0)  # any report (close or ack) means its channel drained
    assert not d.slots[key].full
    assert owner(d, "5") == key


def test_refused_returns_the_batch_and_a_heartbeat_lets_the_worker_try_again():
    d = table("a", "b")
    batches, _ = d.assign(["1", "2"])
    (key, bid, batch) = batches[0]
    other = "b" if key == "a" else "a"
    assert d.refused(key, bid) == batch
    slot = d.slots[key]
    assert slot.full and slot.unacked == {} and slot.outstanding == 0 and slot.total == 0
    assert d.refused(key, bid) == []  # answered once: a repeat returns nothing
    assert set(assign_acked(d, [*batch, "3"])) == {other}
    d.heartbeat(key)  # its loop runs: a worker that closes nothing is not given up for good
    assert not slot.full
    assert owner(d, "4") == key
    d.remove(key)
    assert d.refused(key, bid) == []  # a refusal from a removed worker: remove() returned it
    d.heartbeat(key)  # and its late heartbeat is harmless


def test_ack_clears_full():
    d = table("a")
    batches, _ = d.assign(["1"])
    (_, bid1, _) = batches[0]
    batches, _ = d.assign(["2"])
    (_, bid2, _) = batches[0]
    d.send_failed("a", bid2)
    assert not d.can_accept()
    d.acked("a", bid1)
    assert d.can_accept()


def test_closed_decrements():
    d = table("a")
    assign_acked(d, ["1", "2", "3"])
    assert d.slots["a"].outstanding == 3
    d.closed("a", 2)
    assert d.slots["a"].outstanding == 1
    assert d.slots["a"].total == 3
    d.closed("a", 5)  # never negative
    assert d.slots["a"].outstanding == 0
    d.closed("gone", 1)  # a report from a removed worker is ignored


def test_remove_returns_unacked_connections():
    d = table("a", "b")
    batches1, _ = d.assign(["1", "2"])
    batches2, _ = d.assign(["3", "4"])
    unacked = {c for key, _, batch in batches1 + batches2 if key == "a" for c in batch}
    acked_a = [
        (key, bid, batch) for key, bid, batch in batches1 if key == "a"
    ]  # acknowledge a's first batch: those are the worker's now
    for key, bid, batch in acked_a:
        d.acked(key, bid)
        unacked -= set(batch)
    lost = d.remove("a")
    assert set(lost) == unacked and len(lost) == len(unacked) > 0
    assert "a" not in d.slots
    got = assign_acked(d, lost)
    assert set(got) == {"b"}


def test_remove_then_round_robin_still_works():
    d = table("a", "b", "c")
    owner(d, "1")  # cursor moves past a
    d.closed("a", 1)
    d.remove("b")
    seq = []
    for i in range(6):
        key = owner(d, f"c{i}")
        seq.append(key)
        d.closed(key, 1)
    assert Counter(seq) == {"a": 3, "c": 3}
    assert all(x != y for x, y in itertools.pairwise(seq))  # alternates


# -- a skewed load -------------------------------------------------------------------------------


def test_skewed_load_spreads_evenly():
    """1,000 connections; workers finish at different rates (one is four times slower).

    Each tick, some connections arrive and each worker finishes a share of what it holds, at its
    own rate. Least-outstanding dispatch must keep every worker busy: none idles while another
    holds far more than its share, and the slow worker gets fewer connections instead of a queue.
    """
    rng = random.Random(4)
    keys = ["fast1", "fast2", "fast3", "slow"]
    rate = {"fast1": 4, "fast2": 4, "fast3": 3, "slow": 1}  # connections finished per tick
    d = table(*keys)
    open_conns: dict[Hashable, list[str]] = {k: [] for k in keys}
    worst_imbalance = 0
    sent = 0
    while sent < 1000:
        arriving = [f"c{sent + i}" for i in range(min(rng.randint(5, 15), 1000 - sent))]
        sent += len(arriving)
        batches, left = d.assign(arriving)
        assert left == []
        for key, bid, batch in batches:
            assert d.acked(key, bid) == batch
            open_conns[key].extend(batch)
        loads = [d.slots[k].outstanding for k in keys]
        assert loads == [len(open_conns[k]) for k in keys]
        # nobody idles while another holds more than its share plus a little
        if min(loads) == 0:
            assert max(loads) <= 2, loads
        worst_imbalance = max(worst_imbalance, max(loads) - min(loads))
        for key in keys:
            done = open_conns[key][: rate[key]]
            del open_conns[key][: rate[key]]
            if done:
                d.closed(key, len(done))
    assert worst_imbalance <= 2
    totals = {k: d.slots[k].total for k in keys}
    assert sum(totals.values()) == 1000
    # the slow worker got fewer; the fast ones shared the rest evenly
    assert totals["slow"] < min(totals["fast1"], totals["fast2"])
    assert max(totals["fast1"], totals["fast2"]) - min(totals["fast1"], totals["fast2"]) <= 20


def test_skewed_load_busy_worker_gets_nothing_new():
    """A worker stuck in CPU work does not ack; while others keep up, it gets nothing."""
    d = table("a", "b", "c")
    batches, _ = d.assign(["burn"])
    (stuck, stuck_bid, _) = batches[0]
    counts: Counter[Hashable] = Counter()
    for i in range(300):  # the others answer quickly: each connection closes at once
        key = owner(d, f"c{i}")
        counts[key] += 1
        if key != stuck:
            d.closed(key, 1)
    assert counts[stuck] == 0
    others = [k for k in ("a", "b", "c") if k != stuck]
    assert abs(counts[others[0]] - counts[others[1]]) <= 1
    d.acked(stuck, stuck_bid)
    d.closed(stuck, 1)
    got = Counter(owner(d, f"n{i}") for i in range(30))
    assert got[stuck] >= 10  # back in, and it had the fewest open: it catches up first


def test_a_slow_acker_is_not_skipped_for_a_whole_burst():
    """During a burst of keep-alive connections, a worker that acks late (descheduled, not
    stuck) is preferred less only by BUSY_PENALTY connections: the burst still splits evenly."""
    d = table("a", "b")
    for round_ in range(16):  # 16 accept rounds of 4 connections; "b" never acks in time
        batches, left = d.assign([f"r{round_}-{i}" for i in range(4)])
        assert left == []
        for key, bid, _ in batches:
            if key == "a":
                d.acked(key, bid)
    a, b = d.slots["a"].outstanding, d.slots["b"].outstanding
    assert a + b == 64
    assert abs(a - b) <= BUSY_PENALTY + 1, (a, b)
