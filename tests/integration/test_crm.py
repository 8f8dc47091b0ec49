"""crm on the real broker and database: a call stored exactly once although every event comes twice."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa
from google.protobuf.message import Message

from services.crm import queries
from services.crm.app import Settings, build
from tests.support import running, until
from voicebot import topics
from voicebot.bus import Bus, SeenEvents, encode
from voicebot.config import Settings as BaseSettings
from voicebot.db import ProcessedEvent, connect
from voicebot.events import (
    ApprovedReply,
    CallLifecycle,
    ComplianceDecision,
    Contact,
    Envelope,
    Mark,
    Outcome,
    Transcript,
)


async def test_call_stored_exactly_once_when_every_event_is_published_twice(
    settings: BaseSettings, database_url: str
) -> None:
    tenant, call = f"t-{uuid.uuid4().hex[:8]}", f"call-{uuid.uuid4().hex}"
    phone = "+15550102001"
    contact = Contact(contact_id="c-1", phone_e164=phone, name="Ada", timezone="America/New_York")
    cfg = Settings(**{**settings.model_dump(), "database_url": database_url})
    client = Bus("test-telephony", settings)
    base = Envelope(
        tenant_id=tenant, campaign_id="acme-card", call_id=call, contact_id="c-1", media_node="w1"
    )
    t0 = 1_750_000_000_000_000
    sent: list[tuple[str, Message, Envelope]] = []

    def event(topic: str, payload: Message, at_us: int, marks: tuple[tuple[str, int], ...] = ()) -> None:
        env = client.envelope(base, occurred_at_us=at_us)
        env.marks.extend(Mark(stage=s, at_us=a) for s, a in marks)
        sent.append((topic, payload, env))

    L = CallLifecycle
    event(topics.LIFECYCLE, L(kind=L.DIALING, direction=L.OUTBOUND, contact=contact, attempt=1), t0)
    event(topics.LIFECYCLE, L(kind=L.RINGING, contact=contact, sip_code=180), t0 + 1_000_000)
    event(topics.LIFECYCLE, L(kind=L.ANSWERED, contact=contact, sample_rate=8000), t0 + 3_000_000)
    for seq, text in enumerate(["Hello Ada.", "We have an offer."]):
        reply = ApprovedReply(turn_id="greet", seq=seq, text=text, final=seq == 1, decision_id=f"d{seq}")
        event(topics.REPLIES, reply, t0 + 3_100_000 + seq)
    event(topics.LIFECYCLE, L(kind=L.PLAYBACK_STARTED, turn_id="greet"), t0 + 3_400_000)
    said = Transcript(
        utterance_id="u1",
        text="my card is 4111 1111 1111 1111, stop calling me",
        speech_start_us=t0 + 6_000_000,
        speech_end_us=t0 + 7_000_000,
    )
    event(topics.TRANSCRIPTS, said, t0 + 7_500_000)
    bye = ApprovedReply(turn_id="bye", seq=0, text="I understand. Goodbye.", final=True, end_call=True)
    event(topics.REPLIES, bye, t0 + 7_800_000)
    event(
        topics.LIFECYCLE,
        L(kind=L.PLAYBACK_STARTED, turn_id="bye"),
        t0 + 8_100_000,
        (("telephony.speech_end", t0 + 7_000_000), ("telephony.first_audio", t0 + 8_000_000)),
    )
    event(
        topics.OUTCOMES,
        Outcome(disposition="opted_out", opt_out=True, contact=contact, turns=1),
        t0 + 7_900_000,
    )
    decision = ComplianceDecision(
        decision_id=f"dec-{uuid.uuid4().hex}",
        subject=ComplianceDecision.DIAL,
        allowed=True,
        rule="allowed",
        contact=contact,
        attempt=1,
        ruleset_version="v1-x",
    )
    event(topics.DECISIONS, decision, t0 - 1_000_000)
    ended = L(
        kind=L.ENDED,
        contact=contact,
        sip_code=200,
        sip_reason="OK",
        answered=True,
        duration_s=9.5,
        hangup_by="bot",
    )
    event(topics.LIFECYCLE, ended, t0 + 12_500_000)

    async def publish_all() -> None:
        for topic, payload, env in sent:
            await client.broker.publish(encode(payload, env), topic, key=call.encode())

    engine = connect(database_url)

    def stored() -> int:
        with engine.connect() as conn:
            ids = [env.event_id for _, _, env in sent]
            return conn.scalar(sa.select(sa.func.count()).where(ProcessedEvent.event_id.in_(ids))) or 0

    def snapshot() -> tuple:
        calls = queries.calls_for_campaign(engine, tenant, "acme-card")
        turns = queries.transcript(engine, tenant, call)
        return (
            [(c.call_id, c.state, c.answered, c.sip_code, c.duration_s) for c in calls],
            [(t.speaker, t.text, t.seq) for t in turns],
            [(o.disposition, o.opt_out) for o in queries.outcomes(engine, tenant, "acme-card")],
            [(d.decision_id, d.allowed) for d in queries.decisions_for_phone(engine, tenant, phone)],
        )

    await client.start()
    try:
        async with running(build(cfg)) as svc:
            await publish_all()
            await publish_all()  # a replay this process remembers
            await until(lambda: stored() == len(sent))
            first = snapshot()
            svc.bus.seen = SeenEvents(cfg.dedupe_window)  # as after a restart: only the database knows
            await publish_all()
            marker = f"dec-{uuid.uuid4().hex}"
            decision.decision_id = marker
            await client.publish(topics.DECISIONS, decision, cause=base)
            await until(
                lambda: any(
                    d.decision_id == marker for d in queries.decisions_for_phone(engine, tenant, phone)
                )
            )
            await asyncio.sleep(1.0)  # the other topics' replays were published before the marker
    finally:
        await client.stop()

    calls, turns, outcomes, decisions = snapshot()
    assert (calls, turns, outcomes) == first[:3]
    assert calls == [(call, "ended", True, 200, 9.5)]
    (row,) = queries.calls_for_campaign(engine, tenant, "acme-card")
    assert (
        row.phone == phone
        and row.hangup_by == "bot"
        and row.media_node == "w1"
        and row.direction == "outbound"
    )
    assert row.answered_at is not None and row.ended_at is not None
    assert [(speaker, text) for speaker, text, _ in turns] == [
        ("bot", "Hello Ada. We have an offer."),
        ("customer", "my card is [card number], stop calling me"),
        ("bot", "I understand. Goodbye."),
    ]
    assert sorted(seq for *_, seq in turns) == [1, 2, 3]
    bot = queries.transcript(engine, tenant, call)[-1]
    assert bot.latency["voice_to_voice_s"] == 1.0 and bot.started_us == t0 + 8_100_000
    assert outcomes == [("opted_out", True)]
    assert len(decisions) == 2 and len(first[3]) == 1
    assert queries.dnc_contains(engine, tenant, phone)
    assert not queries.dnc_contains(engine, "other-tenant", phone)
    (report,) = queries.campaign_report(engine, tenant, "acme-card")
    assert (report.disposition, report.customer_turns, report.bot_turns) == ("opted_out", 1, 2)
