"""compliance: pre-dial checks (DIAL_REQUESTS → DECISIONS + DIAL_COMMANDS) and in-call checks of bot text
(LLM_REPLIES → REPLIES + DECISIONS); opt-outs (OUTCOMES) join the do-not-call set at once.

`VOICEBOT_COMPLIANCE_NOW` (ISO 8601, e.g. `2025-03-04T15:00:00Z`; empty = the real clock) pins the
clock the calling-window rule sees, so tests and the demo get the same decision at any hour.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from datetime import datetime

import structlog
from pydantic import Field, field_validator

from services.compliance import rules
from services.compliance.registry import DncRegistry
from voicebot import config, topics
from voicebot.bus import Event, new_id
from voicebot.campaigns import CampaignBook
from voicebot.config import Settings as BaseSettings
from voicebot.events import ApprovedReply, BotText, ComplianceDecision, DialCommand, DialRequest, Outcome
from voicebot.observability import mask_phone
from voicebot.service import Service

log = structlog.get_logger("compliance")


class Settings(BaseSettings):
    compliance_now: str = Field(
        "", description="pin the clock (ISO 8601; no zone = UTC) for tests and demos; empty: real clock"
    )
    compliance_rewritten_turns: int = Field(
        10_000, ge=100, description="turns remembered so a reply's second blocked sentence is dropped"
    )

    @field_validator("compliance_now")
    @classmethod
    def _iso(cls, value: str) -> str:
        return config.check_pinned_clock(value)

    def now_utc(self) -> datetime:
        return config.pinned_now(self.compliance_now)


def _us(at: datetime | None) -> int:
    return int(at.timestamp() * 1_000_000) if at else 0


def build(settings: Settings) -> Service:
    svc = Service("compliance", settings)
    book = CampaignBook(settings.campaigns_dir)
    registry = DncRegistry(settings.resolved_database_url())
    rewritten: OrderedDict[str, None] = OrderedDict()

    @svc.on_start
    async def _load() -> None:
        count = await asyncio.to_thread(registry.load)
        log.info("dnc registry loaded", numbers=count)

    @svc.bus.on(topics.DIAL_REQUESTS, DialRequest)
    async def pre_dial(event: Event[DialRequest]) -> None:
        env, req = event.envelope, event.payload
        campaign = book.get(env.campaign_id)
        tenant = env.tenant_id or campaign.tenant
        contact = req.contact
        decision = rules.check_dial(
            contact.phone_e164,
            contact.timezone or campaign.default_timezone,
            registry.numbers(tenant),
            campaign.calling_window,
            settings.now_utc(),
        )
        record = ComplianceDecision(
            decision_id=new_id(),
            subject=ComplianceDecision.DIAL,
            allowed=decision.allowed,
            rule=decision.rule,
            reason=decision.reason,
            ruleset_version=rules.ruleset_version(campaign),
            contact=contact,
            attempt=req.attempt,
            retry_at_us=_us(decision.retry_at),
        )
        fields = {"tenant_id": tenant, "contact_id": env.contact_id or contact.contact_id}
        await svc.bus.publish(topics.DECISIONS, record, cause=env, **fields)
        if decision.allowed:
            command = DialCommand(
                contact=contact,
                attempt=req.attempt,
                decision_id=record.decision_id,
                caller_id=req.caller_id or campaign.caller_id,
            )
            await svc.bus.publish(topics.DIAL_COMMANDS, command, cause=env, **fields)
        log.info(
            "dial decision",
            phone=mask_phone(contact.phone_e164),
            allowed=decision.allowed,
            rule=decision.rule,
        )

    @svc.bus.on(topics.LLM_REPLIES, BotText)
    async def bot_text(event: Event[BotText]) -> None:
        env, text = event.envelope, event.payload
        campaign = book.get(env.campaign_id)
        decision = rules.forbidden_phrases(text.text, campaign.forbidden_phrases)
        spoken = text.text
        if not decision.allowed:
            # one safe reply per turn: a second blocked sentence of the same reply is dropped
            key = f"{env.call_id}/{text.turn_id}"
            spoken = "" if key in rewritten else campaign.say(campaign.safe_reply)
            rewritten[key] = None
            if len(rewritten) > settings.compliance_rewritten_turns:
                rewritten.popitem(last=False)
            log.warning("bot text rewritten", rule=decision.rule, turn_id=text.turn_id)
        record = ComplianceDecision(
            decision_id=new_id(),
            subject=ComplianceDecision.REPLY,
            allowed=decision.allowed,
            rule=decision.rule,
            reason=decision.reason,
            ruleset_version=rules.ruleset_version(campaign),
            turn_id=text.turn_id,
        )
        await svc.bus.publish(topics.DECISIONS, record, cause=env)
        reply = ApprovedReply(
            turn_id=text.turn_id,
            seq=text.seq,
            text=spoken,
            final=text.final,
            end_call=text.end_call,
            rewritten=not decision.allowed,
            decision_id=record.decision_id,
            sample_rate=text.sample_rate,
        )
        await svc.bus.publish(topics.REPLIES, reply, cause=env)

    # Every instance must see every opt-out (each keeps its own set), so each reads the topic in a
    # group of its own, from the earliest offset: nothing is missed while the group joins, and a
    # replayed opt-out that is already known costs a set lookup.
    @svc.bus.on(topics.OUTCOMES, Outcome, group=f"compliance-dnc-{uuid.uuid4().hex[:12]}", realtime=False)
    async def opt_out(event: Event[Outcome]) -> None:
        outcome = event.payload
        phone = outcome.contact.phone_e164
        tenant = event.envelope.tenant_id
        if not (outcome.opt_out and phone) or phone in registry.numbers(tenant):
            return
        registry.add(tenant, phone)
        await asyncio.to_thread(registry.store, tenant, phone, "opt_out")
        log.info("opt-out added to dnc", phone=mask_phone(phone))

    return svc
