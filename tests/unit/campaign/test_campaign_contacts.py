"""The CSV loader: valid rows become contacts, bad rows are reported by line, duplicates dropped."""

from __future__ import annotations

import pytest

from services.campaign.contacts import ContactsError, contact_id_for, parse_contacts
from voicebot.config import REPO_ROOT

CSV = """\
phone,name,timezone,city
+15550100001,Ada,America/New_York,New York
+1 (555) 010-0002,Alan,,Chicago
5550100003,Bad Phone,America/New_York,Nowhere
+15550100004,Bad Zone,Mars/Olympus,Mars

+15550100001,Ada Again,America/New_York,Boston
+15550100005,Grace,Europe/Berlin,
+15550100006,Too,Many,Fields,Here
"""


def test_valid_rows_profile_and_default_timezone() -> None:
    result = parse_contacts(CSV, "America/Chicago", "demo")
    assert [c.phone for c in result.contacts] == ["+15550100001", "+15550100002", "+15550100005"]
    ada, alan, grace = result.contacts
    assert ada.name == "Ada" and ada.timezone == "America/New_York" and ada.profile == {"city": "New York"}
    assert alan.timezone == "America/Chicago"  # empty → campaign default
    assert grace.profile == {}  # empty extra column is not part of the profile
    assert ada.line == 2 and grace.line == 8


def test_bad_rows_reported_with_line_numbers() -> None:
    result = parse_contacts(CSV, "America/Chicago", "demo")
    lines = {p.line: p.message for p in result.rejected}
    assert set(lines) == {4, 5, 9}
    assert "E.164" in lines[4]
    assert "Mars/Olympus" in lines[5]
    assert "more fields" in lines[9]


def test_duplicates_dropped_with_report() -> None:
    result = parse_contacts(CSV, "America/Chicago", "demo")
    (dup,) = result.duplicates
    assert dup.line == 7 and "line 2" in dup.message
    assert str(dup).startswith("line 7:")


def test_contact_id_stable_and_per_tenant_unless_given() -> None:
    first = parse_contacts(CSV, "UTC", "demo").contacts[0]
    again = parse_contacts(CSV, "UTC", "demo").contacts[0]
    other = parse_contacts(CSV, "UTC", "other-tenant").contacts[0]
    assert first.contact_id == again.contact_id == contact_id_for("demo", "+15550100001")
    assert other.contact_id != first.contact_id
    given = parse_contacts("contact_id,phone\nc-1,+15550100001\nc-1,+15550100002\n", "UTC")
    assert [c.contact_id for c in given.contacts] == ["c-1"]
    assert given.rejected[0].line == 3


def test_header_without_phone_is_an_error() -> None:
    with pytest.raises(ContactsError, match="phone"):
        parse_contacts("name,timezone\nAda,UTC\n", "UTC")
    with pytest.raises(ContactsError):
        parse_contacts("", "UTC")


@pytest.mark.parametrize(
    "phone", ["+0123456789", "+1555", "+1555010000112345", "15550100001", "+1555abc0001"]
)
def test_phone_must_be_e164(phone: str) -> None:
    result = parse_contacts(f"phone\n{phone}\n", "UTC")
    assert not result.contacts and result.rejected[0].line == 2


def test_demo_contacts_file_is_clean() -> None:
    text = (REPO_ROOT / "demo" / "contacts.csv").read_text()
    result = parse_contacts(text, "America/New_York", "demo")
    assert result.contacts and not result.rejected and not result.duplicates
