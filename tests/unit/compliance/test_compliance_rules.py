"""Every compliance rule on its own: window edges, DST switch days, unknown zones, DNC, phrases."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from services.compliance.rules import (
    calling_window,
    check_dial,
    dnc,
    forbidden_phrases,
    ruleset_version,
)
from voicebot.campaigns import CallingWindow, CampaignBook
from voicebot.config import REPO_ROOT

WINDOW = CallingWindow(start=time(8, 0), end=time(21, 0))
NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_dnc_blocks_listed_number_only() -> None:
    registry = {"+15550100001"}
    assert not dnc("+15550100001", registry).allowed
    assert dnc("+15550100001", registry).rule == "dnc"
    assert dnc("+15550100002", registry).allowed


@pytest.mark.parametrize(
    ("now", "allowed"),
    [
        (utc(2025, 1, 15, 12, 59, 59), False),  # 07:59:59 EST
        (utc(2025, 1, 15, 13, 0, 0), True),  # 08:00 EST: window opens
        (utc(2025, 1, 16, 1, 59, 59), True),  # 20:59:59 EST
        (utc(2025, 1, 16, 2, 0, 0), False),  # 21:00 EST: window closed (end exclusive)
        (utc(2025, 7, 15, 12, 0, 0), True),  # 08:00 EDT in summer
        (utc(2025, 7, 15, 11, 59, 0), False),  # 07:59 EDT
    ],
)
def test_window_edges_on_local_clock(now: datetime, allowed: bool) -> None:
    assert calling_window(NY, WINDOW, now).allowed is allowed


def test_blocked_before_window_retries_at_todays_start() -> None:
    decision = calling_window(NY, WINDOW, utc(2025, 1, 15, 10, 0))  # 05:00 EST
    assert not decision.allowed
    assert decision.retry_at == utc(2025, 1, 15, 13, 0)


def test_blocked_after_window_retries_at_tomorrows_start() -> None:
    decision = calling_window(NY, WINDOW, utc(2025, 1, 16, 3, 0))  # 22:00 EST on the 15th
    assert decision.retry_at == utc(2025, 1, 16, 13, 0)


def test_dst_spring_forward_next_start_uses_new_offset() -> None:
    # 2025-03-09 02:00 EST → 03:00 EDT. At 01:30 EST the next start is 08:00 EDT = 12:00 UTC.
    decision = calling_window(NY, WINDOW, utc(2025, 3, 9, 6, 30))
    assert not decision.allowed
    assert decision.retry_at == utc(2025, 3, 9, 12, 0)
    assert calling_window(NY, WINDOW, utc(2025, 3, 9, 12, 0)).allowed
    assert not calling_window(NY, WINDOW, utc(2025, 3, 9, 11, 59)).allowed  # 07:59 EDT


def test_dst_fall_back_day() -> None:
    # 2025-11-02 02:00 EDT → 01:00 EST: 08:00 EST = 13:00 UTC; 12:30 UTC is 07:30 local.
    assert not calling_window(NY, WINDOW, utc(2025, 11, 2, 12, 30)).allowed
    assert calling_window(NY, WINDOW, utc(2025, 11, 2, 13, 0)).allowed
    # evening before the switch (EDT): blocked, retry at 08:00 EST on the switch day
    decision = calling_window(NY, WINDOW, utc(2025, 11, 2, 1, 30))  # 21:30 EDT Nov 1
    assert decision.retry_at == utc(2025, 11, 2, 13, 0)


def test_other_zone_and_half_hour_offset() -> None:
    assert calling_window("Asia/Kolkata", WINDOW, utc(2025, 1, 15, 2, 30)).allowed  # 08:00 IST
    assert not calling_window("Asia/Kolkata", WINDOW, utc(2025, 1, 15, 2, 29)).allowed


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../../etc/passwd", "EST5EDT/x", "localtime"])
def test_unknown_timezone_blocks_for_good(tz: str) -> None:
    decision = calling_window(tz, WINDOW, utc(2025, 1, 15, 15, 0))
    assert not decision.allowed
    assert decision.retry_at is None
    assert "timezone" in decision.reason


def test_window_across_midnight() -> None:
    night = CallingWindow(start=time(22, 0), end=time(2, 0))
    assert calling_window("UTC", night, utc(2025, 1, 15, 23, 0)).allowed
    assert calling_window("UTC", night, utc(2025, 1, 15, 1, 0)).allowed
    blocked = calling_window("UTC", night, utc(2025, 1, 15, 12, 0))
    assert blocked.retry_at == utc(2025, 1, 15, 22, 0)


@pytest.mark.parametrize(
    "text",
    [
        "This card comes with guaranteed approval.",
        "It's RISK-FREE for you!",
        "Guaranteed   approval, of course",
        "no credit check needed",
    ],
)
def test_forbidden_phrase_found_case_and_punctuation_ignored(text: str) -> None:
    phrases = ["guaranteed approval", "risk free", "no credit check"]
    decision = forbidden_phrases(text, phrases)
    assert not decision.allowed
    assert decision.rule == "forbidden_phrase"


def test_forbidden_phrase_needs_whole_words() -> None:
    phrases = ["risk free"]
    assert forbidden_phrases("The card has no annual fee.", phrases).allowed
    assert forbidden_phrases("We assess the brisk freeway.", phrases).allowed
    assert forbidden_phrases("", phrases).allowed


def test_check_dial_dnc_first_then_window() -> None:
    night = utc(2025, 1, 15, 7, 0)  # 02:00 EST
    day = utc(2025, 1, 15, 15, 0)
    assert check_dial("+15550100001", NY, {"+15550100001"}, WINDOW, night).rule == "dnc"
    assert check_dial("+15550100002", NY, set(), WINDOW, night).rule == "calling_window"
    allowed = check_dial("+15550100002", NY, set(), WINDOW, day)
    assert allowed.allowed and allowed.retry_at is None


def test_ruleset_version_changes_with_the_rules() -> None:
    campaign = CampaignBook(REPO_ROOT / "campaigns").get("acme-card")
    before = ruleset_version(campaign)
    changed = campaign.model_copy(update={"forbidden_phrases": [*campaign.forbidden_phrases, "free money"]})
    assert ruleset_version(changed) != before
    assert ruleset_version(campaign) == before
