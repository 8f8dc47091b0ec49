"""Compliance rules, one per function, no I/O: the service, the simulator and the tests call these.

A rule returns a `Decision`; `check_dial` runs the pre-dial rules in order and the first block wins.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from voicebot.campaigns import CallingWindow, Campaign

RULES_VERSION = "1"
ALLOWED = "allowed"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str
    reason: str
    retry_at: datetime | None = None  # a time-bound block may be retried then (None: never)


def ruleset_version(campaign: Campaign) -> str:
    """Code version + a digest of the campaign's rule settings: an audit row says which rules judged it."""
    rules = (
        f"{campaign.calling_window.start}-{campaign.calling_window.end}|{sorted(campaign.forbidden_phrases)}"
    )
    return f"v{RULES_VERSION}-{hashlib.sha256(rules.encode()).hexdigest()[:8]}"


def dnc(phone: str, registry: Container[str]) -> Decision:
    """A number on the tenant's do-not-call list is never dialled."""
    if phone in registry:
        return Decision(False, "dnc", "number is on the do-not-call list")
    return Decision(True, "dnc", "number is not on the do-not-call list")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


def zone(name: str) -> ZoneInfo | None:
    """The IANA zone, or None for an unknown name (never a path or a local file)."""
    if name not in _zones():
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _inside(local: time, window: CallingWindow) -> bool:
    if window.start < window.end:
        return window.start <= local < window.end
    return local >= window.start or local < window.end  # a window across midnight


def calling_window(contact_tz: str, window: CallingWindow, now_utc: datetime) -> Decision:
    """Call only between window.start and window.end on the contact's local clock (DST-aware).

    Blocked: retry_at is the next window start. An unknown zone blocks for good: local time unknown.
    """
    tz = zone(contact_tz)
    if tz is None:
        return Decision(False, "calling_window", f"unknown timezone {contact_tz!r}")
    if window.start == window.end:
        return Decision(False, "calling_window", "the calling window is empty")
    local = now_utc.astimezone(tz)
    span = f"{window.start:%H:%M}-{window.end:%H:%M} {contact_tz}"
    if _inside(local.time().replace(tzinfo=None), window):
        return Decision(True, "calling_window", f"{local:%H:%M} is inside {span}")
    day = local.date()
    start = datetime.combine(day, window.start, tzinfo=tz)
    if start <= local:
        start = datetime.combine(day + timedelta(days=1), window.start, tzinfo=tz)
    return Decision(
        False, "calling_window", f"{local:%H:%M} is outside {span}", retry_at=start.astimezone(UTC)
    )


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def forbidden_phrases(text: str, phrases: Iterable[str]) -> Decision:
    """Bot text may not contain a forbidden phrase (whole words, case and punctuation ignored)."""
    padded = f" {_normalise(text)} "
    for phrase in phrases:
        needle = _normalise(phrase)
        if needle and f" {needle} " in padded:
            return Decision(False, "forbidden_phrase", f"contains forbidden phrase {phrase!r}")
    return Decision(True, "forbidden_phrase", "no forbidden phrase")


def check_dial(
    phone: str, contact_tz: str, registry: Container[str], window: CallingWindow, now_utc: datetime
) -> Decision:
    """The pre-dial rules in order: do-not-call, then calling window; the first block decides."""
    for decision in (dnc(phone, registry), calling_window(contact_tz, window, now_utc)):
        if not decision.allowed:
            return decision
    return Decision(True, ALLOWED, "passed dnc and calling_window")
