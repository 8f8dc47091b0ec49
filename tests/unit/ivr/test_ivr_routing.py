"""Inbound routing rules on their own: numbers, time windows (DST), caller history, menus, precedence,
and the table's validation errors with their line numbers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.ivr.routing import (
    InboundCall,
    MissedCall,
    Reprompt,
    Route,
    RoutesError,
    RouteTable,
    after_answer,
    load_routes,
    match_digits,
    match_speech,
    missed_campaign,
    normalise_number,
    route,
)
from voicebot.campaigns import CampaignBook
from voicebot.config import REPO_ROOT

CAMPAIGNS = {"acme-card", "acme-loan"}
MAIN, DESK, OTHER = "+15550100000", "+15550100002", "+15550109999"
CALLER = "+15550102001"

TABLE = """\
timezone: America/New_York
callback_days: 7
tenants:
  demo: ["+15550100000", "+15550100001", "+15550100002"]
queues:
  sales: "sip:sales@127.0.0.1:5090"
  night: "sip:night@127.0.0.1:5090"
menus:
  main:
    campaign: acme-card
    prompt: For the card press 1. For a person press 2.
    options:
      - {digit: "1", say: [card, cash back], campaign: acme-card}
      - {digit: "2", say: [agent, person], queue: sales}
      - {digit: "9", say: [loans], menu: loans}
    default: {queue: sales}
  loans:
    campaign: acme-loan
    prompt: For a loan say loan.
    retry_prompt: Please say loan, or press 1.
    attempts: 3
    options:
      - {digit: "1", say: [loan], campaign: acme-loan}
    default: {campaign: acme-card}
rules:
  - name: loan callback
    callback_of_campaign: acme-loan
    queue: sales
  - name: callback
    callback_of_campaign: true
  - name: menu line
    number: "+15550100001"
    menu: main
  - name: desk open
    number: "+15550100002"
    days: [mon, tue, wed, thu, fri]
    hours: "09:00-17:00"
    queue: sales
  - name: desk night
    number: "+15550100002"
    days: [fri]
    hours: "22:00-06:00"
    timezone: Europe/London
    queue: night
default: {campaign: acme-card}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def table(tmp_path: Path) -> RouteTable:
    return load_routes(write(tmp_path, TABLE), CAMPAIGNS)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def call(called: str, at: datetime, caller: str = CALLER) -> InboundCall:
    return InboundCall(called=called, caller=caller, at=at)


WEEKDAY_NOON = utc(2025, 1, 15, 17, 0)  # Wednesday 12:00 EST


def test_shipped_table_is_valid_against_the_shipped_campaigns() -> None:
    book = CampaignBook(REPO_ROOT / "campaigns")
    table = load_routes(REPO_ROOT / "ivr" / "routes.yaml", {c.id for c in book})
    assert table.tenant_of("+15550100000") == "demo"
    assert route(table, call("+15550100000", WEEKDAY_NOON)) == Route("campaign", "acme-card", "default")


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+15550100000", "+15550100000"),
        ("15550100000", "+15550100000"),
        ("+1 (555) 010-0000", "+15550100000"),
        ("0015550100000", "+15550100000"),
        ("alice", "alice"),  # not a number: kept, so it matches nothing
        ("123", "123"),
    ],
)
def test_numbers_are_normalised_to_e164(raw: str, e164: str) -> None:
    assert normalise_number(raw) == e164


def test_called_number_selects_the_rule_and_its_tenant(table: RouteTable) -> None:
    assert route(table, call("+15550100001", WEEKDAY_NOON)) == Route("menu", "main", "menu line")
    assert route(table, call(DESK, WEEKDAY_NOON)) == Route(
        "queue", "sip:sales@127.0.0.1:5090", "desk open", queue="sales"
    )
    assert route(table, call(MAIN, WEEKDAY_NOON)).rule == "default"
    assert route(table, call(OTHER, WEEKDAY_NOON)).rule == "default"
    assert table.tenant_of(DESK) == "demo" and table.tenant_of(OTHER) == ""


@pytest.mark.parametrize(
    ("at", "rule"),
    [
        (utc(2025, 1, 15, 13, 59, 59), "default"),  # Wed 08:59:59 EST
        (utc(2025, 1, 15, 14, 0), "desk open"),  # Wed 09:00 EST: opens (start inclusive)
        (utc(2025, 1, 15, 21, 59, 59), "desk open"),  # Wed 16:59:59 EST
        (utc(2025, 1, 15, 22, 0), "default"),  # Wed 17:00 EST: closed (end exclusive)
        (utc(2025, 1, 18, 17, 0), "default"),  # Saturday noon: not a listed day
        (utc(2025, 1, 16, 3, 0), "default"),  # Wed 22:00 EST = Thu 03:00 UTC: the local day counts
    ],
)
def test_business_hours_on_the_local_clock(table: RouteTable, at: datetime, rule: str) -> None:
    assert route(table, call(DESK, at)).rule == rule


@pytest.mark.parametrize(
    ("at", "rule"),
    [
        (utc(2025, 3, 8, 13, 30), "default"),  # Sat before the switch: off anyway
        (utc(2025, 3, 7, 13, 30), "default"),  # Fri 08:30 EST (UTC-5)
        (utc(2025, 3, 10, 13, 30), "desk open"),  # Mon 09:30 EDT (UTC-4): same UTC hour, now open
        (utc(2025, 3, 10, 21, 30), "default"),  # Mon 17:30 EDT
        (utc(2025, 10, 31, 21, 30), "default"),  # Fri 17:30 EDT
        (utc(2025, 11, 3, 21, 30), "desk open"),  # Mon 16:30 EST after fall back: same UTC, still open
    ],
)
def test_time_windows_follow_dst(table: RouteTable, at: datetime, rule: str) -> None:
    assert route(table, call(DESK, at)).rule == rule


@pytest.mark.parametrize(
    ("at", "rule"),
    [
        (utc(2025, 1, 17, 22, 30), "desk night"),  # Fri 22:30 London
        (utc(2025, 1, 18, 5, 59), "desk night"),  # Sat 05:59: the Friday night window goes on
        (utc(2025, 1, 18, 6, 0), "default"),  # Sat 06:00: over
        (utc(2025, 1, 18, 22, 30), "default"),  # Sat 22:30: Saturday is not listed
        (utc(2025, 1, 17, 5, 0), "default"),  # Fri 05:00: belongs to Thursday night
        (utc(2025, 7, 18, 21, 30), "desk night"),  # Fri 22:30 BST (UTC+1) in summer
    ],
)
def test_window_across_midnight_belongs_to_the_day_it_starts(
    table: RouteTable, at: datetime, rule: str
) -> None:
    assert route(table, call(DESK, at)).rule == rule


def test_callback_of_a_missed_call_reaches_that_campaigns_bot(table: RouteTable) -> None:
    at = WEEKDAY_NOON
    missed = [MissedCall("acme-card", at - timedelta(hours=2))]
    assert route(table, call(MAIN, at), missed) == Route("campaign", "acme-card", "callback")
    # the callback rule comes before business hours and the menu line
    assert route(table, call(DESK, at), missed).rule == "callback"
    assert route(table, call("+15550100001", at), missed).rule == "callback"


def test_history_window_latest_call_and_campaign_filters() -> None:
    at = WEEKDAY_NOON
    calls = [
        MissedCall("acme-card", at - timedelta(days=3)),
        MissedCall("acme-loan", at - timedelta(days=1)),
        MissedCall("acme-old", at - timedelta(hours=1)),
    ]
    assert missed_campaign("any", calls, at, 7) == "acme-old"
    assert missed_campaign("any", calls, at, 7, live={"acme-card", "acme-loan"}) == "acme-loan"
    assert missed_campaign("acme-card", calls, at, 7) == "acme-card"
    assert missed_campaign("any", calls[:1], at, 2) is None  # 3 days ago is outside 2 days
    assert missed_campaign("any", [MissedCall("acme-card", at - timedelta(days=7))], at, 7) == "acme-card"
    assert missed_campaign("any", [MissedCall("acme-card", at + timedelta(minutes=1))], at, 7) is None
    assert missed_campaign("any", [], at, 7) is None


def test_callback_rule_with_its_own_target_and_precedence(table: RouteTable) -> None:
    at = WEEKDAY_NOON
    loan = [MissedCall("acme-loan", at - timedelta(hours=1))]
    # "loan callback" names a queue: the missed loan call sends the caller there, ahead of "callback"
    assert route(table, call(MAIN, at), loan).rule == "loan callback"
    assert route(table, call(MAIN, at), loan).queue == "sales"
    both = [MissedCall("acme-card", at - timedelta(minutes=5)), *loan]
    assert route(table, call(MAIN, at), both).rule == "loan callback"  # rule order, not recency
    stale = [MissedCall("acme-card", at - timedelta(days=8))]
    assert route(table, call(MAIN, at), stale).rule == "default"
    gone = [MissedCall("acme-card", at - timedelta(hours=1))]
    assert route(table, call(MAIN, at), gone, live={"acme-loan"}).rule == "default"


def test_menu_digits(table: RouteTable) -> None:
    menu = table.menus["main"]
    assert match_digits(menu, "2").digit == "2"  # type: ignore[union-attr]
    assert match_digits(menu, "2#").digit == "2"  # type: ignore[union-attr]
    assert match_digits(menu, "3") is None
    assert match_digits(menu, "") is None
    assert match_digits(menu, "#") is None
    assert menu.max_digits == 1


@pytest.mark.parametrize(
    ("said", "digit"),
    [
        ("Card, please.", "1"),
        ("I'd like the CASH BACK one", "1"),
        ("Can I talk to a person?", "2"),
        ("agents", "2"),  # plural of a keyword
        ("Two.", "2"),
        ("press 1", "1"),
        ("Nine", "9"),
        ("I want a person about my card", None),  # two options at once: ask again
        ("cardboard", None),  # whole words only
        ("three", None),
        ("one or two", None),
        ("", None),
    ],
)
def test_menu_speech(table: RouteTable, said: str, digit: str | None) -> None:
    option = match_speech(table.menus["main"], said)
    assert (option.digit if option else None) == digit


def test_menu_flow_option_reprompt_then_default(table: RouteTable) -> None:
    option = match_digits(table.menus["main"], "2")
    assert after_answer(table, "main", 1, option) == Route(
        "queue", "sip:sales@127.0.0.1:5090", "menu main option 2", queue="sales"
    )
    assert after_answer(table, "main", 1, None) == Reprompt(2)
    assert after_answer(table, "main", 2, None) == Route(
        "queue", "sip:sales@127.0.0.1:5090", "menu main default", queue="sales"
    )
    assert after_answer(table, "main", 1, match_speech(table.menus["main"], "loans")) == Route(
        "menu", "loans", "menu main option 9"
    )
    assert after_answer(table, "loans", 2, None) == Reprompt(3)
    assert after_answer(table, "loans", 3, None) == Route("campaign", "acme-card", "menu loans default")


def test_prompts_per_attempt(table: RouteTable) -> None:
    main, loans = table.menus["main"], table.menus["loans"]
    assert main.prompt_for(1) == "For the card press 1. For a person press 2."
    assert main.prompt_for(2) == "Sorry, I didn't get that. For the card press 1. For a person press 2."
    assert loans.prompt_for(2) == "Please say loan, or press 1."


def test_without_campaign_ids_names_of_campaigns_are_not_checked(tmp_path: Path) -> None:
    table = load_routes(write(tmp_path, TABLE))
    assert route(table, call(MAIN, WEEKDAY_NOON)).target == "acme-card"


def errors(tmp_path: Path, text: str, campaigns: set[str] | None = CAMPAIGNS) -> list[str]:
    with pytest.raises(RoutesError) as exc:
        load_routes(write(tmp_path, text), campaigns)
    path = str(tmp_path / "routes.yaml")
    lines = str(exc.value).splitlines()
    assert all(line.startswith(path) for line in lines), lines
    return [line.removeprefix(path) for line in lines]


MINIMAL = """\
tenants:
  demo: ["+15550100000"]
queues:
  sales: "sip:sales@127.0.0.1"
default: {campaign: acme-card}
"""


def test_unquoted_number_is_reported_with_its_line(tmp_path: Path) -> None:
    found = errors(tmp_path, MINIMAL.replace('["+15550100000"]', "\n    - +15550100000"))
    assert len(found) == 1
    assert found[0].startswith(":3: tenants.demo.0: Input should be a valid string")
    assert "write phone numbers in quotes" in found[0]


def test_bad_fields_each_get_file_line_and_field(tmp_path: Path) -> None:
    text = MINIMAL + textwrap.dedent(
        """\
        timezone: Mars/Olympus
        rules:
          - number: "+15550100000"
            hours: "9 to 5"
            queue: sales
          - campaign: acme-card
            queue: sales
          - hours: "10:00-10:00"
            days: [mon, funday]
            campaign: acme-card
        """
    )
    found = errors(tmp_path, text)
    assert ":6: timezone: unknown time zone 'Mars/Olympus'" in found[0]
    assert any(f.startswith(':9: rules.0.hours: expected "HH:MM-HH:MM"') for f in found), found
    assert any(f.startswith(":11: rules.1: give exactly one of campaign, queue or menu") for f in found), (
        found
    )
    assert any(f.startswith(":13: rules.2.hours: empty window") for f in found), found
    assert any(f.startswith(":14: rules.2.days.1:") for f in found), found


def test_unknown_names_and_unreachable_rules(tmp_path: Path) -> None:
    text = MINIMAL + textwrap.dedent(
        """\
        menus:
          main:
            campaign: acme-nope
            prompt: Press 1.
            options:
              - {digit: "1", queue: support}
            default: {menu: main}
        rules:
          - number: "+15550109999"
            menu: other
          - campaign: acme-card
          - callback_of_campaign: acme-gone
        """
    )
    found = errors(tmp_path, text)
    assert ":12: menus.main.default: a menu's default is a campaign or a queue, never another menu" in found
    text = text.replace("default: {menu: main}", "default: {queue: sales}")
    found = errors(tmp_path, text)
    assert found == [
        ":8: menus.main.campaign: unknown campaign 'acme-nope' (no such campaign file)",
        ":11: menus.main.options.0.queue: unknown queue 'support' (not under queues)",
        ":15: rules.0.menu: unknown menu 'other' (not under menus)",
        ":14: rules.0.number.0: +15550109999 is not listed under tenants",
        ":17: rules.2: never matches: rule 2 above matches every call",
        ":17: rules.2.callback_of_campaign: unknown campaign 'acme-gone' (no such campaign file)",
    ]


def test_menu_options_must_be_distinct_and_answerable(tmp_path: Path) -> None:
    text = MINIMAL + textwrap.dedent(
        """\
        menus:
          main:
            campaign: acme-card
            prompt: Press 1.
            options:
              - {digit: "1", say: [card], campaign: acme-card}
              - {digit: "1", say: [Card!], queue: sales}
              - {queue: sales}
              - {digit: "12a", queue: sales}
            default: {queue: sales}
        """
    )
    found = errors(tmp_path, text)
    assert ":13: menus.main.options.2: an option needs a digit, words to say, or both" in found
    assert any(f.startswith(":14: menus.main.options.3.digit: String should match pattern") for f in found)
    text = text.replace('      - {queue: sales}\n      - {digit: "12a", queue: sales}\n', "")
    assert errors(tmp_path, text) == [":10: menus.main.options: two options use the same digit"]
    text = text.replace('{digit: "1", say: [Card!]', '{digit: "2", say: [Card!]')
    assert errors(tmp_path, text) == [":10: menus.main.options: two options use the same words"]


def test_tenants_own_distinct_numbers_and_a_default_is_required(tmp_path: Path) -> None:
    text = MINIMAL.replace('  demo: ["+15550100000"]', '  demo: ["+15550100000"]\n  other: ["+15550100000"]')
    assert errors(tmp_path, text) == [":3: tenants.other.0: +15550100000 is also listed under tenant demo"]
    assert errors(tmp_path, MINIMAL.replace("default: {campaign: acme-card}\n", "")) == [
        ":1: default: Field required"
    ]
    assert errors(tmp_path, MINIMAL.replace("acme-card", "acme-nope")) == [
        ":5: default.campaign: unknown campaign 'acme-nope' (no such campaign file)"
    ]


def test_unreadable_files(tmp_path: Path) -> None:
    assert any("invalid YAML" in f for f in errors(tmp_path, "tenants: [\n"))
    assert errors(tmp_path, "- a list\n") == [":1: a routing table must be a mapping"]
    with pytest.raises(RoutesError, match="cannot read the routing table"):
        load_routes(tmp_path / "missing.yaml")


def test_service_refuses_to_start_on_a_bad_table(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("campaign: acme-card", "queue: nope"))
    env = {"VOICEBOT_IVR_ROUTES": str(path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "services.ivr"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert f"ivr: {path}:5: default.queue: unknown queue 'nope' (not under queues)" in result.stderr
    assert "Traceback" not in result.stderr
