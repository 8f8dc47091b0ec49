"""crm: the system of record. Every call event lands in the database exactly once (see store.py).

Runs the migrations at start; database = `settings.resolved_database_url()` (PostgreSQL when up,
else SQLite). Writes run in a worker thread so the consumer loop stays responsive.
"""

from __future__ import annotations

import asyncio

import structlog
from pydantic import Field
from sqlalchemy.engine import Engine

from services.crm import store
from services.crm.redaction import redact
from voicebot import topics
from voicebot.bus import Event
from voicebot.config import Settings as BaseSettings
from voicebot.db import connect, upgrade
from voicebot.events import ApprovedReply, CallLifecycle, ComplianceDecision, Outcome, Transcript
from voicebot.service import Service

log = structlog.get_logger("crm")


class Settings(BaseSettings):
    crm_redact: bool = Field(True, description="mask card and other long numbers in stored transcripts")


def build(settings: Settings) -> Service:
    svc = Service("crm", settings)
    url = settings.resolved_database_url()
    engine: list[Engine] = []

    def text_of(raw: str) -> str:
        return redact(raw) if settings.crm_redact else raw

    async def save(event: Event, effect: store.Effect) -> None:
        stored = await asyncio.to_thread(store.apply, engine[0], event.topic, event.envelope, effect)
        if not stored:
            log.info("event already stored", topic=event.topic)

    @svc.on_start
    async def _migrate() -> None:
        engine.append(connect(url))
        await asyncio.to_thread(upgrade, engine[0])
        log.info("database ready", dialect=engine[0].dialect.name)

    @svc.bus.on(topics.LIFECYCLE, CallLifecycle, realtime=False)
    async def lifecycle(event: Event[CallLifecycle]) -> None:
        await save(event, store.lifecycle(event.envelope, event.payload))

    @svc.bus.on(topics.TRANSCRIPTS, Transcript, realtime=False)
    async def transcript(event: Event[Transcript]) -> None:
        await save(event, store.customer_turn(event.envelope, event.payload, text_of(event.payload.text)))

    @svc.bus.on(topics.REPLIES, ApprovedReply, realtime=False)
    async def reply(event: Event[ApprovedReply]) -> None:
        await save(event, store.bot_turn(event.envelope, event.payload, text_of(event.payload.text)))

    @svc.bus.on(topics.OUTCOMES, Outcome, realtime=False)
    async def outcome(event: Event[Outcome]) -> None:
        await save(event, store.outcome(event.envelope, event.payload))

    @svc.bus.on(topics.DECISIONS, ComplianceDecision, realtime=False)
    async def decision(event: Event[ComplianceDecision]) -> None:
        await save(event, store.decision(event.envelope, event.payload))

    return svc
