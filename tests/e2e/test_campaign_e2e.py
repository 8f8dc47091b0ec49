"""The whole platform, end to end: a 4-contact campaign over real SIP with real models and PostgreSQL.

One contact is on the DNC list, one asks an FAQ question, one is not interested, one opts out. Malformed
messages are injected on two topics before the campaign: they land in the DLQ and the consumers go on.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

from voicebot import db, topics
from voicebot.bus import Bus, Event, decode
from voicebot.config import REPO_ROOT, Settings
from voicebot.events import DeadLetter
from voicebot.stack import Stack

pytestmark = pytest.mark.e2e

TENANT, CAMPAIGN = "demo", "acme-card"
ASKS, DECLINES, OPTS_OUT, ON_DNC = "+15550100001", "+15550100002", "+15550100003", "+15550100005"
WANTS_HUMAN = "+15550100006"
PERSONAS = REPO_ROOT / "demo" / "personas.yaml"
GARBAGE = b"\x08\x96\x01not-an-envelope"


def persona_lines(phone: str) -> list[str]:
    data = yaml.safe_load(PERSONAS.read_text())
    personas = data.get("personas", data)
    return list(personas[phone]["lines"])


def words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


@pytest.fixture(scope="module")
def run(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Start everything, inject bad messages, run the campaign to completion, collect the DLQ."""
    workdir = tmp_path_factory.mktemp("e2e")
    contacts = workdir / "contacts.csv"
    contacts.write_text(
        "contact_id,phone,name,timezone\n"
        f"c-asks,{ASKS},Alice,America/New_York\n"
        f"c-declines,{DECLINES},Bob,America/Chicago\n"
        f"c-optout,{OPTS_OUT},Carol,America/Los_Angeles\n"
        f"c-dnc,{ON_DNC},Dave,America/New_York\n"
        f"c-human,{WANTS_HUMAN},Erin,America/New_York\n"
    )
    db.add_dnc(database_url, TENANT, ON_DNC, source="test seed")
    stack = Stack(
        workdir,
        database_url=database_url,
        extra_env={"VOICEBOT_COMPLIANCE_NOW": "2026-06-18T18:00:00+00:00"},  # 14:00 in New York, 11:00 in LA
    )
    with stack:
        asyncio.run(_inject_garbage(stack.bootstrap))
        result = stack.run_campaign(contacts, CAMPAIGN, timeout=400)
        asyncio.run(_wait_for_outcomes(database_url, 4, timeout=30))
        sim_log = [json.loads(line) for line in stack.sim_log.read_text().splitlines() if line.strip()]
        letters = asyncio.run(_read_dlq(stack.bootstrap))
        alive = stack.alive()
        logs = {p.name: p.read_text(errors="replace") for p in workdir.glob("*.log")}
    yield {
        "result": result,
        "letters": letters,
        "alive": alive,
        "logs": logs,
        "url": database_url,
        "sim": sim_log,
    }


async def _inject_garbage(bootstrap: str) -> None:
    bus = Bus("e2e-test", Settings(kafka_bootstrap=bootstrap))
    await bus.start()
    try:
        for topic in (topics.TRANSCRIPTS, topics.DIAL_REQUESTS):
            await bus.broker.publish(GARBAGE, topic, key=b"bad")
    finally:
        await bus.stop()


async def _wait_for_outcomes(url: str, expected: int, timeout: float) -> None:
    engine = db.connect(url)
    for _ in range(int(timeout * 2)):
        with engine.connect() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(db.OutcomeRow)).scalar() >= expected:
                return
        await asyncio.sleep(0.5)


async def _read_dlq(bootstrap: str) -> list[DeadLetter]:
    bus = Bus("e2e-dlq-reader", Settings(kafka_bootstrap=bootstrap))
    letters: list[DeadLetter] = []

    async def keep(event: Event[DeadLetter]) -> None:
        letters.append(event.payload)

    for topic in (topics.TRANSCRIPTS, topics.DIAL_REQUESTS):
        bus.on(f"{topic}.dlq", DeadLetter, group=f"dlq-{uuid.uuid4().hex}")(keep)
    await bus.start()
    await asyncio.sleep(8)  # group join + fetch
    await bus.stop()
    return letters


def _calls(url: str) -> dict[str, db.Call]:
    with Session(db.connect(url), expire_on_commit=False) as session:
        return {c.phone: c for c in session.scalars(sa.select(db.Call))}


def _turns(url: str, call_id: str, speaker: str) -> list[str]:
    with db.connect(url).connect() as conn:
        q = sa.select(db.Turn.text).where(db.Turn.call_id == call_id, db.Turn.speaker == speaker)
        return [t for t in conn.execute(q.order_by(db.Turn.started_us, db.Turn.seq)).scalars() if t]


def test_campaign_finishes_and_every_service_stays_up(run: dict) -> None:
    assert run["result"].returncode == 0, run["result"].stdout + run["result"].stderr
    assert all(run["alive"].values()), run["alive"]


def test_dnc_contact_is_never_dialled_and_the_block_is_recorded(run: dict) -> None:
    assert ON_DNC not in _calls(run["url"])
    with Session(db.connect(run["url"])) as session:
        blocks = session.scalars(
            sa.select(db.DecisionRow).where(db.DecisionRow.phone == ON_DNC, db.DecisionRow.allowed.is_(False))
        ).all()
    assert blocks and all(b.rule == "dnc" for b in blocks)


def test_other_calls_connect(run: dict) -> None:
    calls = _calls(run["url"])
    for phone in (ASKS, DECLINES, OPTS_OUT, WANTS_HUMAN):
        assert calls[phone].answered, f"{phone} did not connect: {calls[phone].sip_code}"


@pytest.mark.parametrize("phone", [ASKS, DECLINES, OPTS_OUT])
def test_crm_holds_the_customer_words_as_heard(run: dict, phone: str) -> None:
    heard = " ".join(_turns(run["url"], _calls(run["url"])[phone].call_id, "customer"))
    spoken = " ".join(persona_lines(phone))
    ratio = difflib.SequenceMatcher(None, words(heard), words(spoken)).ratio()
    assert ratio > 0.7, f"heard {heard!r} for {spoken!r}"


def test_question_is_answered_from_the_faq(run: dict) -> None:
    bot = " ".join(_turns(run["url"], _calls(run["url"])[ASKS].call_id, "bot")).lower()
    assert "automated assistant" in bot  # AI disclosure in the greeting
    assert "no annual fee, ever" in bot  # the FAQ's own answer, not a made-up one


def test_opt_out_is_recorded_and_lands_on_dnc(run: dict) -> None:
    url = run["url"]
    call = _calls(url)[OPTS_OUT]
    with db.connect(url).connect() as conn:
        outcome = conn.execute(
            sa.select(db.OutcomeRow.disposition).where(db.OutcomeRow.call_id == call.call_id)
        ).scalar_one()
        dnc = (
            conn.execute(sa.select(db.DncEntry.phone).where(db.DncEntry.tenant_id == TENANT)).scalars().all()
        )
    assert outcome == "opted_out"
    assert OPTS_OUT in dnc
    assert call.hangup_by == "bot"


def test_declined_offer_is_not_interested(run: dict) -> None:
    call = _calls(run["url"])[DECLINES]
    with db.connect(run["url"]).connect() as conn:
        outcome = conn.execute(
            sa.select(db.OutcomeRow.disposition).where(db.OutcomeRow.call_id == call.call_id)
        ).scalar_one()
    assert outcome == "not_interested"


def test_customer_cuts_the_greeting_and_is_handed_to_an_agent(run: dict) -> None:
    """Barge-in over the greeting, "a real person" -> warm transfer to the agents' PBX with a summary,
    the agent talks to the customer over the bridge, and the CRM knows where the call went."""
    call = _calls(run["url"])[WANTS_HUMAN]
    with Session(db.connect(run["url"])) as session:
        bot_turns = session.scalars(
            sa.select(db.Turn).where(db.Turn.call_id == call.call_id, db.Turn.speaker == "bot")
        ).all()
        outcome = session.scalars(
            sa.select(db.OutcomeRow.disposition).where(db.OutcomeRow.call_id == call.call_id)
        ).one()
    greeting = next(t for t in bot_turns if "automated assistant" in t.text)
    assert 1500 <= greeting.latency["barge_in_after_ms"] <= 6000  # cut while it was being said
    assert any("connecting you with a colleague" in t.text for t in bot_turns)
    assert call.transfer_target.startswith("sip:sales-queue@") and outcome == "transferred"
    assert call.hangup_by == "agent"
    agent = [e for e in run["sim"] if e.get("persona") == "agent-sam"]
    ringing = next(e for e in agent if e["event"] == "ringing")
    assert "real person" in ringing["summary"].lower()  # the agent was told why the customer called
    spoke = next(e for e in agent if e["event"] == "line_started")
    heard = [
        e
        for e in run["sim"]
        if e.get("persona") == "wants-human"
        and e["event"] == "bot_audio_started"
        and e["at_us"] >= spoke["at_us"]
    ]
    assert heard and heard[0]["at_us"] - spoke["at_us"] < 1_000_000  # the customer hears the agent


def test_malformed_messages_land_in_dlq_and_consumers_go_on(run: dict) -> None:
    bad = [letter for letter in run["letters"] if letter.original == GARBAGE]
    consumers = {(letter.topic, letter.consumer) for letter in bad}
    assert (topics.DIAL_REQUESTS, "compliance") in consumers
    assert any(topic == topics.TRANSCRIPTS for topic, _ in consumers)
    assert all(letter.error for letter in bad)
    # the transcripts after the garbage were still handled: the CRM has the customers' words
    assert _turns(run["url"], _calls(run["url"])[ASKS].call_id, "customer")
    with pytest.raises(ValueError):
        decode(GARBAGE, [DeadLetter])


def test_no_phone_number_in_any_log(run: dict) -> None:
    for name, text in run["logs"].items():
        for phone in (ASKS, DECLINES, OPTS_OUT, ON_DNC, WANTS_HUMAN):
            assert phone not in text and phone[1:] not in text, f"{phone} in {name}"
