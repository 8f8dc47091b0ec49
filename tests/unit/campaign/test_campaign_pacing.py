"""Pacing and progress with a stepped clock: rate, concurrency, slots freed by ends and blocks."""

from __future__ import annotations

import pytest

from services.campaign.pacing import Pacer
from services.campaign.progress import Progress, Status


def simulate(pacer: Pacer, n: int, call_s: float, step: float = 0.01) -> list[float]:
    """Dial n contacts; every call lasts call_s. Returns the dial times."""
    now, dials, ends = 0.0, [], []
    while len(dials) < n:
        ends = [e for e in ends if e > now]
        if pacer.wait(now, len(ends)) == 0:
            pacer.dialled(now)
            dials.append(now)
            ends.append(now + call_s)
        now = round(now + step, 6)
    return dials


def test_rate_limits_new_dials() -> None:
    dials = simulate(Pacer(calls_per_second=2, max_concurrent=100), 5, call_s=0.1)
    assert dials == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


def test_concurrency_limits_calls_in_flight() -> None:
    dials = simulate(Pacer(calls_per_second=100, max_concurrent=2), 4, call_s=1.0)
    assert dials[:2] == pytest.approx([0.0, 0.01])
    assert dials[2] >= 1.0 and dials[3] >= 1.01


def test_wait_values() -> None:
    pacer = Pacer(calls_per_second=4, max_concurrent=1)
    assert pacer.wait(10.0, 0) == 0
    pacer.dialled(10.0)
    assert pacer.wait(10.1, 0) == pytest.approx(0.15)
    assert pacer.wait(10.1, 1) is None  # every slot taken
    assert pacer.wait(20.0, 0) == 0  # idle time gives no burst credit
    pacer.dialled(20.0)
    assert pacer.wait(20.0, 0) == pytest.approx(0.25)


def test_invalid_pacing() -> None:
    with pytest.raises(ValueError):
        Pacer(calls_per_second=0, max_concurrent=1)


def test_progress_finishes_on_end_block_or_timeout() -> None:
    progress = Progress(["a", "b", "c"])
    assert progress.dialled("a", 0) and progress.dialled("b", 0) and progress.dialled("c", 0)
    assert progress.in_flight == 3
    assert progress.decided("a", allowed=False)
    assert progress.decided("b", allowed=True)
    assert progress.answered_call("b")
    assert not progress.answered_call("b")  # no change: no progress line
    assert progress.ended("b")
    assert not progress.ended("b") and not progress.decided("a", allowed=True)
    assert not progress.done and progress.in_flight == 1
    assert progress.expire(now=5, timeout_s=10) == []
    assert progress.expire(now=11, timeout_s=10) == ["c"]
    assert progress.done
    assert progress.summary() == {
        "contacts": 3,
        "dialled": 3,
        "blocked": 1,
        "answered": 1,
        "ended": 1,
        "timed_out": 1,
    }
    assert progress.status["c"] is Status.TIMED_OUT
    assert progress.line("b").startswith("[3/3] dialled=3 blocked=1 answered=1 ended=1 in_flight=0  b ended")


def test_ended_without_answered_event_still_counts_answer_when_flagged() -> None:
    progress = Progress(["a"])
    progress.dialled("a", 0)
    progress.ended("a")
    assert progress.summary()["answered"] == 0 and progress.done
