"""The elastic pool's rule (when to start a worker, which one to retire), the front's dispatcher list and the
frame timing the workers report; the processes themselves run in tests/integration/test_sip_load.py."""

from __future__ import annotations

import pytest

from services.telephony.supervisor import FrameTotals, PoolWorker, plan_pool
from voicebot.kamailio import dispatcher_list
from voicebot.sip import FrameTiming


def plan(workers: list[PoolWorker], waiting: int = 0, **kw: float) -> tuple[int, int | None]:
    rules = {"slots": 4, "min_workers": 1, "max_workers": 4, "spawn_free_slots": 2, "idle_retire_s": 30.0}
    rules.update(kw)
    return plan_pool(workers, waiting, **rules)  # type: ignore[arg-type]


def busy(index: int, calls: int, idle_s: float = 0.0) -> PoolWorker:
    return PoolWorker(index, 4 - calls, ready=True, retiring=False, idle_s=idle_s)


def test_enough_free_slots_starts_nothing() -> None:
    assert plan([busy(0, 2)]) == (0, None)


def test_few_free_slots_start_one_worker() -> None:
    assert plan([busy(0, 3)]) == (1, None)


def test_a_starting_worker_counts_its_slots() -> None:
    starting = PoolWorker(1, 4, ready=False, retiring=False, idle_s=0.0)
    assert plan([busy(0, 4), starting]) == (0, None)


def test_a_burst_of_waiting_dials_starts_several_workers_at_once() -> None:
    assert plan([busy(0, 4)], waiting=5) == (2, None)  # 0 free; needs 2 + 5: two more workers give 8


def test_never_more_than_the_maximum_retiring_ones_included() -> None:
    retiring = PoolWorker(1, 4, ready=False, retiring=True, idle_s=99.0)
    assert plan([busy(0, 4), retiring], waiting=10, max_workers=2) == (0, None)
    assert plan([busy(0, 4)], waiting=10, max_workers=3) == (2, None)


def test_retiring_worker_slots_do_not_count_as_free() -> None:
    retiring = PoolWorker(1, 4, ready=True, retiring=True, idle_s=99.0)
    assert plan([busy(0, 3), retiring]) == (1, None)


def test_idle_worker_beyond_the_minimum_is_retired_highest_index_first() -> None:
    workers = [busy(0, 0, idle_s=100), busy(1, 0, idle_s=100), busy(2, 0, idle_s=100)]
    assert plan(workers) == (0, 2)


def test_no_retirement_before_the_idle_time() -> None:
    assert plan([busy(0, 1), busy(1, 0, idle_s=29)]) == (0, None)
    assert plan([busy(0, 1), busy(1, 0, idle_s=30)]) == (0, 1)


def test_a_worker_with_a_call_is_not_retired() -> None:
    assert plan([busy(0, 1, idle_s=100), busy(1, 1, idle_s=100)]) == (0, None)
    assert plan([busy(0, 0, idle_s=100), busy(1, 1, idle_s=100)]) == (0, 0)  # the idle one, any index


def test_the_minimum_stays() -> None:
    workers = [busy(0, 0, idle_s=100), busy(1, 0, idle_s=100)]
    assert plan(workers, min_workers=2) == (0, None)


def test_no_retirement_that_would_start_a_worker_again() -> None:
    # without worker 1 only 1 slot would be free (< 2): retiring it would only spawn another
    assert plan([busy(0, 3), busy(1, 0, idle_s=100)]) == (0, None)
    assert plan([busy(0, 2), busy(1, 0, idle_s=100)]) == (0, 1)


def test_dispatcher_list_is_one_line_per_worker_in_set_one() -> None:
    text = dispatcher_list(["127.0.0.1:5082", "127.0.0.1:5080", "127.0.0.1:5082"])
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["1 sip:127.0.0.1:5080", "1 sip:127.0.0.1:5082"]
    assert dispatcher_list([]).strip().startswith("#")  # an empty list is valid: Kamailio answers 503


def test_frame_timing_buckets_and_node_totals() -> None:
    a, b = FrameTiming(), FrameTiming()
    for late in (0.3, 0.9, 3.0, 45.0):
        a.observe("rx", late)
    b.observe("rx", -2.0)  # an early callback counts as on time
    b.observe("tx", 500.0)
    totals = FrameTotals()
    totals.add(a.snapshot())
    totals.add(b.snapshot())
    rx = totals.counts["rx"]
    assert sum(rx) == 5
    assert rx[0] == 3  # <= 1 ms: 0.3, 0.9 and the early one
    assert rx[FrameTiming.BUCKETS_MS.index(5.0)] == 1
    assert rx[FrameTiming.BUCKETS_MS.index(80.0)] == 1  # 45 ms: in (40, 80]
    assert totals.counts["tx"][-1] == 1  # beyond the last bucket
    assert totals.max_ms["rx"] == pytest.approx(45.0)
    assert totals.sum_ms["rx"] == pytest.approx(49.2)
    merged = FrameTotals()
    merged.merge(totals)
    assert merged.counts == totals.counts and merged.max_ms == totals.max_ms
