"""What a campaign run knows about each contact: pending → dialled → (blocked | answered → ended).

Pure bookkeeping: the app feeds it events and prints `line()` whenever `apply_*` reports a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    DIALLED = "dialled"
    ALLOWED = "allowed"
    ANSWERED = "answered"
    BLOCKED = "blocked"
    ENDED = "ended"
    TIMED_OUT = "timed_out"


FINAL = {Status.BLOCKED, Status.ENDED, Status.TIMED_OUT}


@dataclass(slots=True)
class Progress:
    contact_ids: list[str]
    status: dict[str, Status] = field(default_factory=dict)
    dialled_at: dict[str, float] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.status = {cid: Status.PENDING for cid in self.contact_ids}

    def _set(self, cid: str, new: Status) -> bool:
        old = self.status.get(cid)
        if old is None or old in FINAL or old == new:
            return False
        self.status[cid] = new
        return True

    def dialled(self, cid: str, now: float) -> bool:
        self.dialled_at[cid] = now
        return self._set(cid, Status.DIALLED)

    def decided(self, cid: str, allowed: bool) -> bool:
        if self.status.get(cid) != Status.DIALLED:
            return not allowed and self._set(cid, Status.BLOCKED)
        return self._set(cid, Status.ALLOWED if allowed else Status.BLOCKED)

    def answered_call(self, cid: str) -> bool:
        if cid in self.status and self.status[cid] not in FINAL:
            self.answered.add(cid)
        return self._set(cid, Status.ANSWERED)

    def ended(self, cid: str) -> bool:
        return self._set(cid, Status.ENDED)

    def expire(self, now: float, timeout_s: float) -> list[str]:
        """Contacts dialled longer than `timeout_s` ago with no end: finished as timed out."""
        late = [
            cid
            for cid, at in self.dialled_at.items()
            if self.status[cid] not in FINAL and now - at > timeout_s
        ]
        for cid in late:
            self.status[cid] = Status.TIMED_OUT
        return late

    def count(self, *statuses: Status) -> int:
        return sum(1 for s in self.status.values() if s in statuses)

    @property
    def in_flight(self) -> int:
        return self.count(Status.DIALLED, Status.ALLOWED, Status.ANSWERED)

    @property
    def done(self) -> bool:
        return all(s in FINAL for s in self.status.values())

    def summary(self) -> dict[str, int]:
        return {
            "contacts": len(self.status),
            "dialled": len(self.dialled_at),
            "blocked": self.count(Status.BLOCKED),
            "answered": len(self.answered),
            "ended": self.count(Status.ENDED),
            "timed_out": self.count(Status.TIMED_OUT),
        }

    def line(self, cid: str = "") -> str:
        s = self.summary()
        finished = s["blocked"] + s["ended"] + s["timed_out"]
        event = f"  {cid} {self.status[cid]}" if cid else ""
        return (
            f"[{finished}/{s['contacts']}] dialled={s['dialled']} blocked={s['blocked']} "
            f"answered={s['answered']} ended={s['ended']} in_flight={self.in_flight}{event}"
        )
