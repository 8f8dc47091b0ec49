"""The IVR's memory on a real (SQLite) database: outbound calls by tenant and caller, which of them count
as missed, replays that change nothing, pruning, and routing decisions stored once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.ivr import history
from services.ivr.routing import MissedCall, Route
from voicebot.db import connect, upgrade
from voicebot.db.models import IvrRouting
from voicebot.events import CallLifecycle, Contact, Envelope

L = CallLifecycle
T0 = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)
PHONE = "+15550102001"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path}/ivr.db")
    upgrade(engine)
    return engine


def us(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def outbound(
    engine: Engine,
    call_id: str,
    answered: bool,
    ended: datetime,
    *,
    tenant: str = "demo",
    campaign: str = "acme-card",
    phone: str = PHONE,
    machine: bool = False,
) -> None:
    """What a worker reports about one outbound call, every event twice (at-least-once delivery)."""
    contact = Contact(contact_id="c1", phone_e164=phone)
    events = [(L(kind=L.DIALING, direction=L.OUTBOUND, contact=contact), ended - timedelta(seconds=40))]
    if machine:
        amd = L(kind=L.AMD_VERDICT, direction=L.OUTBOUND, contact=contact, amd=L.MACHINE)
        events.append((amd, ended - timedelta(seconds=20)))
    events.append((L(kind=L.ENDED, direction=L.OUTBOUND, contact=contact, answered=answered), ended))
    for change, at in events * 2:
        env = Envelope(call_id=call_id, tenant_id=tenant, campaign_id=campaign, occurred_at_us=us(at))
        assert history.worth_recording(env, change)
        history.record(engine, env, change)


def test_unanswered_and_machine_calls_are_missed_answered_ones_are_not(engine: Engine) -> None:
    outbound(engine, "c-no-answer", False, T0 - timedelta(days=2))
    outbound(engine, "c-human", True, T0 - timedelta(days=1), campaign="acme-loan")
    outbound(engine, "c-machine", True, T0 - timedelta(hours=3), campaign="acme-vm", machine=True)
    missed = history.missed_calls(engine, "demo", PHONE, T0 - timedelta(days=7))
    assert missed == [
        MissedCall("acme-vm", T0 - timedelta(hours=3)),
        MissedCall("acme-card", T0 - timedelta(days=2)),
    ]
    assert history.missed_calls(engine, "demo", PHONE, T0 - timedelta(days=1)) == missed[:1]


def test_history_is_per_tenant_and_per_number(engine: Engine) -> None:
    outbound(engine, "c-1", False, T0, tenant="other")
    outbound(engine, "c-2", False, T0, phone="+15550102002")
    since = T0 - timedelta(days=7)
    assert history.missed_calls(engine, "demo", PHONE, since) == []
    assert [m.campaign_id for m in history.missed_calls(engine, "other", PHONE, since)] == ["acme-card"]
    assert len(history.missed_calls(engine, "demo", "15550102002", since)) == 1  # numbers normalised


def test_a_dial_without_an_end_is_not_missed_yet_and_inbound_calls_are_not_recorded(engine: Engine) -> None:
    contact = Contact(phone_e164=PHONE)
    env = Envelope(call_id="live", tenant_id="demo", campaign_id="acme-card", occurred_at_us=us(T0))
    history.record(engine, env, L(kind=L.DIALING, direction=L.OUTBOUND, contact=contact))
    assert history.missed_calls(engine, "demo", PHONE, T0 - timedelta(days=1)) == []
    assert not history.worth_recording(env, L(kind=L.ENDED, direction=L.INBOUND, contact=contact))
    assert not history.worth_recording(env, L(kind=L.RINGING, direction=L.OUTBOUND, contact=contact))
    unbound = Envelope(call_id="in", tenant_id="demo")
    assert not history.worth_recording(unbound, L(kind=L.ENDED, direction=L.OUTBOUND, contact=contact))


def test_prune_forgets_old_calls_only(engine: Engine) -> None:
    outbound(engine, "old", False, T0 - timedelta(days=30))
    outbound(engine, "new", False, T0 - timedelta(days=1))
    contact = Contact(phone_e164=PHONE)
    stuck = Envelope(
        call_id="stuck", tenant_id="demo", campaign_id="acme-card", occurred_at_us=us(T0 - timedelta(days=30))
    )
    history.record(engine, stuck, L(kind=L.DIALING, direction=L.OUTBOUND, contact=contact))
    assert history.prune(engine, T0 - timedelta(days=8)) == 2
    assert [m.ended_at for m in history.missed_calls(engine, "demo", PHONE, T0 - timedelta(days=60))] == [
        T0 - timedelta(days=1)
    ]


def test_a_routing_decision_is_stored_once(engine: Engine) -> None:
    route = Route("queue", "sip:sales@127.0.0.1:5090", "desk open", queue="sales")
    assert not history.decided(engine, "in-1")
    assert history.save_decision(engine, "in-1", "demo", "+15550100002", route, "main", "digits 2", T0)
    assert not history.save_decision(engine, "in-1", "demo", "+15550100002", None)
    assert history.decided(engine, "in-1")
    assert history.save_decision(engine, "in-2", "demo", "+15550100001", None, "main")
    with Session(engine) as session:
        first, second = session.get(IvrRouting, "in-1"), session.get(IvrRouting, "in-2")
        assert first is not None and second is not None
        assert (first.kind, first.target, first.rule, first.menu, first.answer) == (
            "queue",
            "sales",
            "desk open",
            "main",
            "digits 2",
        )
        assert (second.kind, second.target, second.tenant_id) == ("abandoned", "", "demo")
