"""Inbound routing: the YAML routing table, validated on load, and the pure decisions made over it.

A call to one of a tenant's numbers goes to a campaign's bot, a human queue or a menu; rules are tried
top to bottom and the first that matches decides, `default` takes the rest. No I/O here besides
reading the table: the service looks up the caller's missed campaign calls and passes the call's time.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ANY = "any"
NOT_UNDERSTOOD = "Sorry, I didn't get that."
DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
TargetKind = Literal["campaign", "queue", "menu"]


class RoutesError(ValueError):
    """A routing table that cannot be used; each line of the message names the file, line and field."""


def normalise_number(raw: str) -> str:
    """E.164 from what a trunk sends (`+1 555-010-0000`, `15550100000`); anything else is kept as is."""
    number = re.sub(r"[\s().-]", "", raw)
    if number.startswith("00") and number[2:].isdigit():
        number = "+" + number[2:]
    elif number.isdigit() and 7 <= len(number) <= 15:
        number = "+" + number
    return number


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


def _zone_name(value: str) -> str:
    if value not in _zones():
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as America/New_York)")
    return value


# ---- the table -------------------------------------------------------------------------------------


class Target(BaseModel):
    """Where a call goes: a campaign's bot, a named human queue, or a menu."""

    model_config = ConfigDict(extra="forbid")
    campaign: str | None = None
    queue: str | None = None
    menu: str | None = None

    def targets(self) -> list[tuple[TargetKind, str]]:
        named: list[tuple[TargetKind, str | None]] = [
            ("campaign", self.campaign),
            ("queue", self.queue),
            ("menu", self.menu),
        ]
        return [(kind, value) for kind, value in named if value is not None]

    def _one_target(self, required: bool = True) -> None:
        count = len(self.targets())
        if count > 1 or (required and count == 0):
            raise ValueError("give exactly one of campaign, queue or menu")


class Destination(Target):
    @model_validator(mode="after")
    def _exactly_one(self) -> Destination:
        self._one_target()
        return self


class Hours(BaseModel):
    """A local time-of-day window, end exclusive; start after end spans midnight."""

    start: time
    end: time


class Option(Target):
    """One menu choice: a keypad digit (string), spoken keywords, or both."""

    digit: str | None = Field(None, pattern=r"^[0-9*]{1,8}$")
    say: list[str] = []

    @field_validator("say")
    @classmethod
    def _keywords(cls, words: list[str]) -> list[str]:
        return [" ".join(_tokens(w)) for w in words if _tokens(w)]

    @model_validator(mode="after")
    def _valid(self) -> Option:
        self._one_target()
        if self.digit is None and not self.say:
            raise ValueError("an option needs a digit, words to say, or both")
        return self

    @property
    def label(self) -> str:
        return self.digit if self.digit is not None else self.say[0]


class Menu(BaseModel):
    """A prompt and its options; no answer (or none that matches) re-prompts, then `default` decides."""

    model_config = ConfigDict(extra="forbid")
    campaign: str  # the prompt is spoken for this campaign: its compliance rules check the text
    prompt: str = Field(min_length=1)
    retry_prompt: str = ""
    attempts: int = Field(2, ge=1, le=5)
    timeout_ms: int = Field(5000, ge=1000, le=30_000)
    options: list[Option] = Field(min_length=1)
    default: Destination

    @field_validator("options")
    @classmethod
    def _distinct(cls, options: list[Option]) -> list[Option]:
        digits = [o.digit for o in options if o.digit is not None]
        if len(digits) != len(set(digits)):
            raise ValueError("two options use the same digit")
        words = [w for o in options for w in o.say]
        if len(words) != len(set(words)):
            raise ValueError("two options use the same words")
        return options

    @field_validator("default")
    @classmethod
    def _final(cls, default: Destination) -> Destination:
        if default.menu is not None:
            raise ValueError("a menu's default is a campaign or a queue, never another menu")
        return default

    @property
    def max_digits(self) -> int:
        return max((len(o.digit) for o in self.options if o.digit is not None), default=1)

    def prompt_for(self, attempt: int) -> str:
        """The first prompt, then the retry prompt (by default: sorry, and the prompt again)."""
        if attempt <= 1:
            return self.prompt
        return self.retry_prompt or f"{NOT_UNDERSTOOD} {self.prompt}"


class Rule(Target):
    """Conditions (all must hold) and a target; `callback_of_campaign` targets the missed campaign."""

    name: str = ""
    number: list[str] = []
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = list(DAYS)
    hours: Hours | None = None
    timezone: str | None = None
    callback_of_campaign: str | None = None

    @field_validator("number", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | int) else value

    @field_validator("number")
    @classmethod
    def _e164(cls, numbers: list[str]) -> list[str]:
        for number in numbers:
            _check_e164(number)
        return numbers

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError('expected "HH:MM-HH:MM" in quotes, e.g. "09:00-17:00"')
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value)
        if not m:
            raise ValueError(f'expected "HH:MM-HH:MM", got {value!r}')
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"not a time of day: {value!r}")
        start, end = time(h1, m1), time(0, 0) if h2 == 24 else time(h2, m2)
        if start == end:
            raise ValueError(f"empty window {value!r} (for the whole day leave hours out)")
        return {"start": start, "end": end}

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _zone_name(value)

    @field_validator("callback_of_campaign", mode="before")
    @classmethod
    def _callback(cls, value: Any) -> Any:
        if value is True:
            return ANY
        if value is False:
            return None
        return value

    @model_validator(mode="after")
    def _target(self) -> Rule:
        self._one_target(required=self.callback_of_campaign is None)
        if not self.days:
            raise ValueError("days: the rule names no day, so it never matches")
        return self

    @property
    def matches_everything(self) -> bool:
        return (
            not self.number
            and set(self.days) == set(DAYS)
            and self.hours is None
            and self.callback_of_campaign is None
        )


class RouteTable(BaseModel):
    """The whole routing table (one YAML file)."""

    model_config = ConfigDict(extra="forbid")
    timezone: str = "UTC"
    callback_days: int = Field(7, ge=1, le=365)
    tenants: dict[str, list[str]] = Field(min_length=1)
    queues: dict[str, str] = {}
    menus: dict[str, Menu] = {}
    rules: list[Rule] = []
    default: Destination
    source: Path = Path()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _zone_name(value)

    @field_validator("tenants")
    @classmethod
    def _owners(cls, tenants: dict[str, list[str]]) -> dict[str, list[str]]:
        for tenant, numbers in tenants.items():
            if not re.fullmatch(r"^[a-z0-9][a-z0-9-]{1,62}$", tenant):
                raise ValueError(f"tenant {tenant!r}: lower-case letters, digits and dashes")
            for number in numbers:
                _check_e164(number)
        return tenants

    @field_validator("queues")
    @classmethod
    def _uris(cls, queues: dict[str, str]) -> dict[str, str]:
        for name, uri in queues.items():
            if not re.fullmatch(NAME, name):
                raise ValueError(f"queue name {name!r}: lower-case letters, digits, '-' and '_'")
            if not re.fullmatch(r"^sips?:\S+$", uri):
                raise ValueError(f"queue {name}: {uri!r} is not a SIP URI (sip:...)")
        return queues

    @property
    def owners(self) -> dict[str, str]:
        return {number: tenant for tenant, numbers in self.tenants.items() for number in numbers}

    def tenant_of(self, called: str) -> str:
        """The tenant that owns the dialled number ("" for a number nobody listed)."""
        return self.owners.get(called, "")

    @property
    def uses_history(self) -> bool:
        return any(rule.callback_of_campaign is not None for rule in self.rules)

    def resolve(self, target: Target, rule: str) -> Route:
        kind, value = target.targets()[0]
        if kind == "queue":
            return Route("queue", self.queues[value], rule, queue=value)
        return Route(kind, value, rule)


def _check_e164(number: str) -> None:
    if not E164.match(number):
        raise ValueError(f"{number!r} is not an E.164 number (+ and 7 to 15 digits)")


# ---- loading ---------------------------------------------------------------------------------------


def load_routes(path: Path, campaigns: Container[str] | None = None) -> RouteTable:
    """Parse and validate the table; `campaigns` (ids) checks that every named campaign exists."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoutesError(f"{path}: cannot read the routing table: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RoutesError(f"{path}:{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise RoutesError(f"{path}:1: a routing table must be a mapping")
    try:
        table = RouteTable.model_validate({**data, "source": path})
    except ValidationError as exc:
        problems = [_problem(path, text, tuple(err["loc"]), _message(err)) for err in exc.errors()]
        raise RoutesError("\n".join(problems)) from None
    problems = [_problem(path, text, loc, msg) for loc, msg in _references(table, campaigns)]
    if problems:
        raise RoutesError("\n".join(problems))
    return table


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "string_type" and isinstance(err.get("input"), int):
        msg += " (write phone numbers in quotes: YAML reads +1555... as an integer)"
    return msg


def line_of(text: str, loc: tuple[str | int, ...]) -> int:
    """Line (1-based) of a field path in the YAML source; a missing field: the line of its parent."""
    try:
        node: yaml.Node | None = yaml.compose(text)
    except yaml.YAMLError:
        return 1
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _problem(path: Path, text: str, loc: tuple[str | int, ...], msg: str) -> str:
    field = ".".join(str(p) for p in loc) or "(top)"
    return f"{path}:{line_of(text, loc)}: {field}: {msg}"


def _references(
    table: RouteTable, campaigns: Container[str] | None
) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """Names that must exist elsewhere: queues, menus, campaigns, owned numbers; unreachable rules."""
    seen: dict[str, str] = {}
    for tenant, numbers in table.tenants.items():
        for i, number in enumerate(numbers):
            if number in seen:
                yield ("tenants", tenant, i), f"{number} is also listed under tenant {seen[number]}"
            seen[number] = tenant

    def target(loc: tuple[str | int, ...], t: Target) -> Iterable[tuple[tuple[str | int, ...], str]]:
        if t.queue is not None and t.queue not in table.queues:
            yield (*loc, "queue"), f"unknown queue {t.queue!r} (not under queues)"
        if t.menu is not None and t.menu not in table.menus:
            yield (*loc, "menu"), f"unknown menu {t.menu!r} (not under menus)"
        if t.campaign is not None and campaigns is not None and t.campaign not in campaigns:
            yield (*loc, "campaign"), f"unknown campaign {t.campaign!r} (no such campaign file)"

    for name, menu in table.menus.items():
        if campaigns is not None and menu.campaign not in campaigns:
            yield ("menus", name, "campaign"), f"unknown campaign {menu.campaign!r} (no such campaign file)"
        for i, option in enumerate(menu.options):
            yield from target(("menus", name, "options", i), option)
        yield from target(("menus", name, "default"), menu.default)
    catch_all: int | None = None
    for i, rule in enumerate(table.rules):
        loc: tuple[str | int, ...] = ("rules", i)
        if catch_all is not None:
            yield loc, f"never matches: rule {catch_all + 1} above matches every call"
        elif rule.matches_everything:
            catch_all = i
        yield from target(loc, rule)
        for j, number in enumerate(rule.number):
            if number not in seen:
                yield (*loc, "number", j), f"{number} is not listed under tenants"
        wanted = rule.callback_of_campaign
        if wanted not in (None, ANY) and campaigns is not None and wanted not in campaigns:
            yield (*loc, "callback_of_campaign"), f"unknown campaign {wanted!r} (no such campaign file)"
    yield from target(("default",), table.default)


# ---- decisions -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """A decision: `target` is a campaign id, a queue's SIP URI or a menu name; `rule` says which rule."""

    kind: TargetKind
    target: str
    rule: str
    queue: str = ""  # the queue's name when kind is "queue"


@dataclass(frozen=True, slots=True)
class InboundCall:
    called: str  # the number the customer dialled (E.164)
    caller: str  # the customer's number (E.164)
    at: datetime  # when the call was answered (aware)


@dataclass(frozen=True, slots=True)
class MissedCall:
    """An outbound campaign call to this caller that nobody (or only a machine) answered."""

    campaign_id: str
    ended_at: datetime


def in_window(rule: Rule, default_zone: str, at: datetime) -> bool:
    """Whether `at` falls on the rule's days and hours, on the local clock of its zone (DST-aware).

    A window across midnight belongs to the day it starts: fri 22:00-06:00 covers Saturday 03:00.
    """
    local = at.astimezone(ZoneInfo(rule.timezone or default_zone))
    today = DAYS[local.weekday()]
    if rule.hours is None:
        return today in rule.days
    start, end, now = rule.hours.start, rule.hours.end, local.time().replace(tzinfo=None)
    if start < end or end == time(0, 0):
        return today in rule.days and start <= now and (now < end or end == time(0, 0))
    yesterday = DAYS[(local.weekday() - 1) % 7]
    return (now >= start and today in rule.days) or (now < end and yesterday in rule.days)


def missed_campaign(
    wanted: str,
    missed: Iterable[MissedCall],
    at: datetime,
    days: int,
    live: Container[str] | None = None,
) -> str | None:
    """The campaign of the latest missed call within `days` before `at` (`wanted`: any or one campaign);
    a campaign that no longer exists (`live`) cannot take the call."""
    since = at - timedelta(days=days)
    recent = [
        m
        for m in missed
        if since <= m.ended_at <= at
        and (wanted == ANY or m.campaign_id == wanted)
        and (live is None or m.campaign_id in live)
    ]
    return max(recent, key=lambda m: m.ended_at).campaign_id if recent else None


def route(
    table: RouteTable,
    call: InboundCall,
    missed: Sequence[MissedCall] = (),
    live: Container[str] | None = None,
) -> Route:
    """The first rule whose conditions all hold decides; none: the table's default."""
    for i, rule in enumerate(table.rules):
        if rule.number and call.called not in rule.number:
            continue
        if not in_window(rule, table.timezone, call.at):
            continue
        name = rule.name or f"rule {i + 1}"
        if rule.callback_of_campaign is not None:
            campaign = missed_campaign(rule.callback_of_campaign, missed, call.at, table.callback_days, live)
            if campaign is None:
                continue
            if not rule.targets():
                return Route("campaign", campaign, name)
        return table.resolve(rule, name)
    return table.resolve(table.default, "default")


# ---- menus -----------------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    """Lower-case words without punctuation; a plural matches its singular ("agents" ~ "agent")."""
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


def match_digits(menu: Menu, digits: str) -> Option | None:
    """The option whose digit the caller keyed (a trailing # ends the entry)."""
    keyed = digits.strip().rstrip("#")
    return next((o for o in menu.options if keyed and o.digit == keyed), None)


def match_speech(menu: Menu, text: str) -> Option | None:
    """The option whose words the caller said (whole words); else the digit the caller said ("two",
    "press 2"). Two options heard at once is no answer: the caller is asked again."""
    padded = f" {' '.join(_tokens(text))} "
    by_words = [o for o in menu.options if any(f" {w} " in padded for w in o.say)]
    if len(by_words) == 1:
        return by_words[0]
    if by_words:
        return None
    spoken = {DIGIT_WORDS.get(w, w) for w in padded.split()} & {
        o.digit for o in menu.options if o.digit is not None
    }
    if len(spoken) != 1:
        return None
    return match_digits(menu, spoken.pop())


@dataclass(frozen=True, slots=True)
class Reprompt:
    attempt: int  # the attempt about to start (2 = first retry)


def after_answer(table: RouteTable, menu_name: str, attempt: int, option: Option | None) -> Route | Reprompt:
    """Next step of a menu: the chosen option's target; no match: ask again, then the menu's default."""
    menu = table.menus[menu_name]
    if option is not None:
        return table.resolve(option, f"menu {menu_name} option {option.label}")
    if attempt < menu.attempts:
        return Reprompt(attempt + 1)
    return table.resolve(menu.default, f"menu {menu_name} default")
