"""CRM without a broker: migrations match the models, effects apply once, redaction, the read API."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from services.crm import queries, store
from services.crm.redaction import redact
from voicebot.db import Base, connect, load_dnc, upgrade
from voicebot.events import ApprovedReply, CallLifecycle, Contact, Envelope, Outcome


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path}/crm.db")
    upgrade(engine)
    return engine


def test_migrations_match_models_and_rerun(engine: Engine) -> None:
    upgrade(engine)  # idempotent
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def env(event_id: str, at_us: int = 1_750_000_000_000_000) -> Envelope:
    return Envelope(
        event_id=event_id, tenant_id="t1", campaign_id="acme-card", call_id="call-1", occurred_at_us=at_us
    )


def test_effect_applies_once_per_event_id(engine: Engine) -> None:
    contact = Contact(contact_id="c1", phone_e164="+15550105001")
    answered = CallLifecycle(kind=CallLifecycle.ANSWERED, contact=contact)
    assert store.apply(engine, "call.lifecycle", env("e1"), store.lifecycle(env("e1"), answered))
    assert not store.apply(engine, "call.lifecycle", env("e1"), store.lifecycle(env("e1"), answered))
    for i, (seq, text) in enumerate([(1, "world."), (0, "Hello"), (1, "world.")]):
        reply = ApprovedReply(turn_id="t", seq=seq, text=text)
        store.apply(engine, "dialogue.replies", env(f"r{i}"), store.bot_turn(env(f"r{i}"), reply, text))
    opt = Outcome(disposition="opted_out", opt_out=True, contact=contact)
    for _ in range(2):
        store.apply(engine, "crm.outcomes", env("o1"), store.outcome(env("o1"), opt))
    (call,) = queries.calls_for_campaign(engine, "t1", "acme-card")
    assert call.state == "answered" and call.answered and call.phone == "+15550105001"
    (turn,) = queries.transcript(engine, "t1", "call-1")
    assert turn.text == "Hello world." and turn.speaker == "bot"
    assert [o.disposition for o in queries.outcomes(engine, "t1")] == ["opted_out"]
    assert load_dnc(engine) == {"t1": {"+15550105001"}}
    assert queries.calls_for_campaign(engine, "t2", "acme-card") == []


def test_ended_state_is_final(engine: Engine) -> None:
    ended = CallLifecycle(kind=CallLifecycle.ENDED, sip_code=486, sip_reason="Busy Here")
    late = CallLifecycle(kind=CallLifecycle.RINGING, sip_code=180)
    store.apply(engine, "call.lifecycle", env("e1"), store.lifecycle(env("e1"), ended))
    store.apply(engine, "call.lifecycle", env("e2"), store.lifecycle(env("e2"), late))
    (call,) = queries.calls_for_campaign(engine, "t1", "acme-card")
    assert (call.state, call.sip_code, call.answered) == ("ended", 486, False)


def test_events_inside_a_call_are_recorded_without_changing_its_state(engine: Engine) -> None:
    """Voicemail verdict, recording, keypad, barge-in and transfer land on the call and its turns."""
    events = [
        CallLifecycle(kind=CallLifecycle.ANSWERED),
        CallLifecycle(kind=CallLifecycle.AMD_VERDICT, amd=CallLifecycle.HUMAN, amd_reason="short greeting"),
        CallLifecycle(kind=CallLifecycle.SPEECH_STARTED, speech_start_us=5),
        CallLifecycle(kind=CallLifecycle.PLAYBACK_STARTED, turn_id="greeting"),
        CallLifecycle(kind=CallLifecycle.BARGE_IN, turn_id="greeting", played_ms=1840),
        CallLifecycle(kind=CallLifecycle.DTMF, dtmf="12", dtmf_method="rfc2833"),
        CallLifecycle(kind=CallLifecycle.TRANSFER_FAILED, transfer_target="sip:q@pbx", sip_code=480),
        CallLifecycle(kind=CallLifecycle.RECORDING_READY, recording_uri="file:///r/call-1.wav"),
    ]
    for i, change in enumerate(events):
        e = env(f"e{i}", 1_750_000_000_000_000 + i)
        store.apply(engine, "call.lifecycle", e, store.lifecycle(e, change))
    (call,) = queries.calls_for_campaign(engine, "t1", "acme-card")
    assert call.state == "answered"  # none of those is a call state
    assert (call.amd, call.recording_uri, call.transfer_target) == (
        "human",
        "file:///r/call-1.wav",
        "sip:q@pbx",
    )
    turns = queries.transcript(engine, "t1", "call-1")
    greeting = next(t for t in turns if t.turn_id == "greeting")
    assert greeting.latency["barge_in_after_ms"] == 1840
    assert [t.text for t in turns if t.speaker == "customer"] == ["[keypad] 12"]


def test_an_inbound_call_gets_its_campaign_when_the_ivr_routes_it(engine: Engine) -> None:
    unbound = Envelope(event_id="a1", call_id="in-1", occurred_at_us=1_750_000_000_000_000)
    bound = Envelope(event_id="a2", tenant_id="t1", campaign_id="acme-card", call_id="in-1", occurred_at_us=1)
    answered = CallLifecycle(kind=CallLifecycle.ANSWERED, direction=CallLifecycle.INBOUND)
    store.apply(engine, "call.lifecycle", unbound, store.lifecycle(unbound, answered))
    assert queries.calls_for_campaign(engine, "t1", "acme-card") == []
    store.apply(engine, "call.lifecycle", bound, store.lifecycle(bound, answered))
    (call,) = queries.calls_for_campaign(engine, "t1", "acme-card")
    assert call.call_id == "in-1" and call.direction == "inbound"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my card is 4111 1111 1111 1111 ok", "my card is [card number] ok"),
        ("4111-1111-1111-1111", "[card number]"),
        ("call me on 555 010 2000", "call me on [number]"),
        ("I am 42 and want 2 cards", "I am 42 and want 2 cards"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
