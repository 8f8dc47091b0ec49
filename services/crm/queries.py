"""The CRM read API used by the demo, the end-to-end test and the CLI: rows by tenant, never across.

Each function takes an Engine or a database URL and returns detached rows (plain attribute access).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from voicebot.db import Call, DecisionRow, DncEntry, OutcomeRow, Turn, add_dnc, connect

__all__ = [
    "CallReport",
    "add_dnc",
    "calls_for_campaign",
    "campaign_report",
    "decisions_for_phone",
    "dnc_contains",
    "outcomes",
    "transcript",
]

Db = Engine | str


def _session(db: Db) -> Session:
    return Session(connect(db) if isinstance(db, str) else db, expire_on_commit=False)


def calls_for_campaign(db: Db, tenant_id: str, campaign_id: str) -> list[Call]:
    with _session(db) as s:
        stmt = (
            sa.select(Call)
            .where(Call.tenant_id == tenant_id, Call.campaign_id == campaign_id)
            .order_by(Call.started_at, Call.call_id)
        )
        return list(s.scalars(stmt))


def transcript(db: Db, tenant_id: str, call_id: str) -> list[Turn]:
    """Customer and bot turns in spoken order (bot turns by playback start, else approval time)."""
    with _session(db) as s:
        stmt = (
            sa.select(Turn)
            .where(Turn.tenant_id == tenant_id, Turn.call_id == call_id)
            .order_by(Turn.started_us, Turn.seq)
        )
        return list(s.scalars(stmt))


def outcomes(
    db: Db, tenant_id: str, campaign_id: str | None = None, call_id: str | None = None
) -> list[OutcomeRow]:
    with _session(db) as s:
        stmt = sa.select(OutcomeRow).where(OutcomeRow.tenant_id == tenant_id)
        if campaign_id is not None:
            stmt = stmt.where(OutcomeRow.campaign_id == campaign_id)
        if call_id is not None:
            stmt = stmt.where(OutcomeRow.call_id == call_id)
        return list(s.scalars(stmt.order_by(OutcomeRow.at, OutcomeRow.id)))


def decisions_for_phone(db: Db, tenant_id: str, phone: str, subject: str | None = None) -> list[DecisionRow]:
    with _session(db) as s:
        stmt = sa.select(DecisionRow).where(DecisionRow.tenant_id == tenant_id, DecisionRow.phone == phone)
        if subject is not None:
            stmt = stmt.where(DecisionRow.subject == subject)
        return list(s.scalars(stmt.order_by(DecisionRow.at)))


def dnc_contains(db: Db, tenant_id: str, phone: str) -> bool:
    with _session(db) as s:
        stmt = sa.select(DncEntry.id).where(DncEntry.tenant_id == tenant_id, DncEntry.phone == phone)
        return s.scalar(stmt) is not None


@dataclass(frozen=True, slots=True)
class CallReport:
    """One line of a campaign's summary table."""

    call_id: str
    contact_id: str
    phone: str
    state: str
    sip_code: int
    answered: bool
    duration_s: float
    hangup_by: str
    disposition: str
    opt_out: bool
    customer_turns: int
    bot_turns: int


def campaign_report(db: Db, tenant_id: str, campaign_id: str) -> Sequence[CallReport]:
    """Every call of a campaign with its outcome and turn counts, in dialling order."""
    calls = calls_for_campaign(db, tenant_id, campaign_id)
    by_call = {o.call_id: o for o in outcomes(db, tenant_id, campaign_id)}
    with _session(db) as s:
        counts = {
            (call_id, speaker): n
            for call_id, speaker, n in s.execute(
                sa.select(Turn.call_id, Turn.speaker, sa.func.count())
                .where(Turn.tenant_id == tenant_id, Turn.call_id.in_([c.call_id for c in calls]))
                .group_by(Turn.call_id, Turn.speaker)
            )
        }
    return [
        CallReport(
            call_id=c.call_id,
            contact_id=c.contact_id,
            phone=c.phone,
            state=c.state,
            sip_code=c.sip_code,
            answered=c.answered,
            duration_s=c.duration_s,
            hangup_by=c.hangup_by,
            disposition=by_call[c.call_id].disposition if c.call_id in by_call else "",
            opt_out=by_call[c.call_id].opt_out if c.call_id in by_call else False,
            customer_turns=counts.get((c.call_id, "customer"), 0),
            bot_turns=counts.get((c.call_id, "bot"), 0),
        )
        for c in calls
    ]
