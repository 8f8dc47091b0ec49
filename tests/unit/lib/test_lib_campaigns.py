"""Campaign files are validated on load with file, line and field in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.campaigns import CampaignBook, ScriptError, load_campaign
from voicebot.config import REPO_ROOT

GOOD = """\
id: test-offer
tenant: demo
company: Test Co
caller_id: "+15550100000"
knowledge_base: faq.md
lines:
  greeting: Hello {name}, this is {agent} from {company}.
  pitch: A pitch.
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "faq.md").write_text("## Q?\nA.\n")
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_shipped_campaigns_validate() -> None:
    book = CampaignBook(REPO_ROOT / "campaigns")
    assert len(book) >= 1
    card = book.get("acme-card")
    assert "automated assistant" in card.lines.greeting
    assert card.faq_text.startswith("#")


def test_lines_are_filled_per_contact(tmp_path: Path) -> None:
    campaign = load_campaign(_write(tmp_path, GOOD))
    assert campaign.say(campaign.lines.greeting, {"name": "Ann"}) == "Hello Ann, this is Alex from Test Co."
    assert campaign.say(campaign.lines.greeting) == "Hello, this is Alex from Test Co."


def test_bad_field_names_line_and_field(tmp_path: Path) -> None:
    bad = GOOD.replace('caller_id: "+15550100000"', 'caller_id: "555-0100"')
    with pytest.raises(ScriptError) as err:
        load_campaign(_write(tmp_path, bad))
    assert "c.yaml:4: caller_id" in str(err.value)


def test_missing_line_and_unknown_field(tmp_path: Path) -> None:
    bad = GOOD.replace("  pitch: A pitch.\n", "  pich: A pitch.\n")
    with pytest.raises(ScriptError) as err:
        load_campaign(_write(tmp_path, bad))
    message = str(err.value)
    assert "lines.pitch: Field required" in message
    assert "c.yaml:8: lines.pich" in message


def test_missing_knowledge_base_file(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("faq.md", "nope.md"))
    with pytest.raises(ScriptError, match="knowledge_base: file not found"):
        load_campaign(path)


def test_unknown_campaign_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown campaign 'nope'"):
        CampaignBook(REPO_ROOT / "campaigns").get("nope")
