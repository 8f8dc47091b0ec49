"""Dial pacing: at most `calls_per_second` new dials, at most `max_concurrent` calls in flight.

Pure: the caller passes the clock, so tests step time instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Pacer:
    calls_per_second: float
    max_concurrent: int
    _next_at: float = float("-inf")

    def __post_init__(self) -> None:
        if self.calls_per_second <= 0 or self.max_concurrent < 1:
            raise ValueError("calls_per_second must be > 0 and max_concurrent >= 1")

    def wait(self, now: float, in_flight: int) -> float | None:
        """Seconds until the next dial may go; None while every slot is taken (wait for an end)."""
        if in_flight >= self.max_concurrent:
            return None
        return max(0.0, self._next_at - now)

    def dialled(self, now: float) -> None:
        """A dial went out at `now`: the next one waits one interval (no burst after idle time)."""
        self._next_at = max(now, self._next_at) + 1.0 / self.calls_per_second
