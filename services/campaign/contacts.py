"""The contact list: a CSV of phone,name,timezone (+ any extra columns = profile), validated row by row.

Bad rows are reported with their line numbers and skipped, duplicate numbers are dropped with a
report, so one typo never stops a campaign. Pure: takes text, returns contacts and problems.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass, field
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
SEPARATORS = re.compile(r"[\s().\-]")
CONTACT_NS = uuid.UUID("6f1d2a3c-5b7e-4c1a-9d2e-7a8b9c0d1e2f")
KNOWN = {"contact_id", "phone", "name", "timezone"}


class ContactsError(ValueError):
    """The file as a whole cannot be used (no header, no phone column)."""


@dataclass(frozen=True, slots=True)
class ContactRow:
    contact_id: str
    phone: str
    name: str
    timezone: str
    profile: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(slots=True)
class ContactList:
    contacts: list[ContactRow] = field(default_factory=list)
    rejected: list[Problem] = field(default_factory=list)  # bad rows, skipped
    duplicates: list[Problem] = field(default_factory=list)  # repeated numbers, dropped


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


def valid_timezone(name: str) -> bool:
    if name not in _zones():
        return False
    try:
        ZoneInfo(name)
    except (ValueError, OSError):
        return False
    return True


def normalise_phone(raw: str) -> str:
    """Spaces, dots, dashes and parentheses are formatting; what is left must be E.164."""
    return SEPARATORS.sub("", raw.strip())


def contact_id_for(namespace: str, phone: str) -> str:
    """Stable across runs of the same list (UUIDv5 of tenant and number), so retries match up."""
    return str(uuid.uuid5(CONTACT_NS, f"{namespace}:{phone}"))


def parse_contacts(text: str, default_timezone: str, namespace: str = "") -> ContactList:
    """Validate every row; `namespace` (the tenant) keeps derived contact ids apart between tenants."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "phone" not in header:
        raise ContactsError("line 1: the header must have a 'phone' column (phone,name,timezone,...)")
    reader.fieldnames = header
    result = ContactList()
    first_line: dict[str, int] = {}
    ids: dict[str, int] = {}
    for row in reader:
        start = reader.line_num  # the row's (last) physical line; blank lines are counted too
        if None in row:
            result.rejected.append(Problem(start, f"{len(row[None])} more fields than the header"))  # type: ignore[index]
            continue
        values = {k: (v or "").strip() for k, v in row.items()}
        if not any(values.values()):
            continue  # blank line
        phone = normalise_phone(values.get("phone", ""))
        if not E164.match(phone):
            result.rejected.append(
                Problem(start, f"phone {values.get('phone', '')!r} is not E.164 (+<country><number>)")
            )
            continue
        tz = values.get("timezone", "") or default_timezone
        if not valid_timezone(tz):
            result.rejected.append(Problem(start, f"timezone {tz!r} is not an IANA zone"))
            continue
        if phone in first_line:
            result.duplicates.append(Problem(start, f"number already on line {first_line[phone]}: dropped"))
            continue
        contact_id = values.get("contact_id", "") or contact_id_for(namespace, phone)
        if contact_id in ids:
            result.rejected.append(
                Problem(start, f"contact_id {contact_id!r} already on line {ids[contact_id]}")
            )
            continue
        first_line[phone], ids[contact_id] = start, start
        profile = {k: v for k, v in values.items() if k not in KNOWN and k and v}
        result.contacts.append(ContactRow(contact_id, phone, values.get("name", ""), tz, profile, start))
    return result
