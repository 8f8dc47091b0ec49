"""The system-of-record tables (SQLAlchemy 2). crm writes them; compliance reads (and upserts) `dnc`.

Every row carries `tenant_id` so each tenant's data stays its own. Times are UTC; `*_us` columns are
unix microseconds copied from events, so a turn's timeline can be compared across services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(64)
PHONE = String(20)


class Base(DeclarativeBase):
    pass


class ProcessedEvent(Base):
    """An event whose effect is stored: written in the same transaction as the effect (idempotency)."""

    __tablename__ = "processed_events"
    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID, index=True)
    topic: Mapped[str] = mapped_column(String(120))
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Call(Base):
    __tablename__ = "calls"
    call_id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    campaign_id: Mapped[str] = mapped_column(ID, default="")
    contact_id: Mapped[str] = mapped_column(ID, default="")
    phone: Mapped[str] = mapped_column(PHONE, default="")
    direction: Mapped[str] = mapped_column(String(16), default="")
    state: Mapped[str] = mapped_column(String(32), default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    sip_code: Mapped[int] = mapped_column(Integer, default=0)
    sip_reason: Mapped[str] = mapped_column(String(200), default="")
    answered: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    media_node: Mapped[str] = mapped_column(String(120), default="")
    hangup_by: Mapped[str] = mapped_column(String(16), default="")
    recording_uri: Mapped[str] = mapped_column(String(500), default="", server_default="")
    amd: Mapped[str] = mapped_column(String(16), default="", server_default="")  # human, machine, uncertain
    transfer_target: Mapped[str] = mapped_column(String(200), default="", server_default="")

    __table_args__ = (Index("ix_calls_tenant_campaign", "tenant_id", "campaign_id"),)


class Turn(Base):
    """One customer utterance or one bot reply (all approved sentences of a turn_id, in seq order)."""

    __tablename__ = "turns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    call_id: Mapped[str] = mapped_column(ID)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    speaker: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    chunks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_us: Mapped[int] = mapped_column(BigInteger, default=0)
    ended_us: Mapped[int] = mapped_column(BigInteger, default=0)
    turn_id: Mapped[str] = mapped_column(ID, default="")
    utterance_id: Mapped[str] = mapped_column(ID, default="")
    rewritten: Mapped[bool] = mapped_column(default=False)
    latency: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        UniqueConstraint("tenant_id", "call_id", "speaker", "turn_id", "utterance_id", name="uq_turns_key"),
        Index("ix_turns_call", "tenant_id", "call_id"),
    )


class OutcomeRow(Base):
    __tablename__ = "outcomes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    campaign_id: Mapped[str] = mapped_column(ID, default="")
    call_id: Mapped[str] = mapped_column(ID, default="")
    contact_id: Mapped[str] = mapped_column(ID, default="")
    phone: Mapped[str] = mapped_column(PHONE, default="")
    disposition: Mapped[str] = mapped_column(String(32))
    opt_out: Mapped[bool] = mapped_column(default=False)
    slots: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    callback_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    turns: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_outcomes_tenant_campaign", "tenant_id", "campaign_id"),
        Index("ix_outcomes_call", "call_id"),
    )


class DecisionRow(Base):
    __tablename__ = "compliance_decisions"
    decision_id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    campaign_id: Mapped[str] = mapped_column(ID, default="")
    subject: Mapped[str] = mapped_column(String(16))
    allowed: Mapped[bool] = mapped_column()
    rule: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    ruleset_version: Mapped[str] = mapped_column(String(64), default="")
    contact_id: Mapped[str] = mapped_column(ID, default="")
    phone: Mapped[str] = mapped_column(PHONE, default="")
    call_id: Mapped[str] = mapped_column(ID, default="")
    turn_id: Mapped[str] = mapped_column(ID, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_decisions_tenant_phone", "tenant_id", "phone"),)


class DncEntry(Base):
    """Do-not-call: a number this tenant must never dial again."""

    __tablename__ = "dnc"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    phone: Mapped[str] = mapped_column(PHONE)
    source: Mapped[str] = mapped_column(String(32), default="")
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("tenant_id", "phone", name="uq_dnc_tenant_phone"),)


class IvrOutboundCall(Base):
    """An outbound campaign call as the IVR remembers it: a missed one sends the callback to its bot."""

    __tablename__ = "ivr_outbound_calls"
    call_id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    campaign_id: Mapped[str] = mapped_column(ID)
    phone: Mapped[str] = mapped_column(PHONE)
    dialed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered: Mapped[bool] = mapped_column(default=False)
    machine: Mapped[bool] = mapped_column(default=False)  # answering-machine verdict: still a missed call

    __table_args__ = (Index("ix_ivr_outbound_calls_caller", "tenant_id", "phone", "ended_at"),)


class IvrRouting(Base):
    """Where the IVR sent one inbound call and which rule decided (audit; a replay never routes twice)."""

    __tablename__ = "ivr_routings"
    call_id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    called_number: Mapped[str] = mapped_column(PHONE, default="")
    rule: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(16))  # campaign, queue, abandoned
    target: Mapped[str] = mapped_column(String(200), default="")
    menu: Mapped[str] = mapped_column(ID, default="")
    answer: Mapped[str] = mapped_column(String(32), default="")  # digits, speech, no input
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_ivr_routings_tenant_at", "tenant_id", "at"),)
