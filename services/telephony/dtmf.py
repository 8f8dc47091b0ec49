"""Keypad input (pure): digits from RFC 2833 events or SIP INFO become one answer per menu question.

Without a COLLECT_DTMF request each key press is its own event (a caller pressing 0 for an agent);
with one, digits are gathered until `#`, `max_digits`, or the inter-digit timeout (the worker's timer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DIGITS = frozenset("0123456789*#ABCD")
METHODS = {"rfc2833", "info"}


def clean(digits: str) -> str:
    """Only valid DTMF symbols, upper case; raises on anything else (a command with junk is refused)."""
    out = digits.strip().upper()
    bad = sorted({d for d in out if d not in DIGITS})
    if bad:
        raise ValueError(f"not DTMF digits: {''.join(bad)!r}")
    return out


@dataclass
class Collector:
    max_digits: int = 0  # 0: no limit (until '#' or the timeout)
    timeout_ms: int = 3000
    digits: list[str] = field(default_factory=list)

    def push(self, digit: str) -> str | None:
        """The collected answer once complete (without the '#'), else None."""
        if digit == "#":
            return self.done()
        self.digits.append(digit)
        if self.max_digits and len(self.digits) >= self.max_digits:
            return self.done()
        return None

    def done(self) -> str:
        answer = "".join(self.digits)
        self.digits.clear()
        return answer
