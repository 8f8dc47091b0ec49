"""compliance on the real broker and database: DNC and window blocks, dial commands, rewrites, opt-outs."""

from __future__ import annotations

import asyncio
import uuid

from services.compliance.app import Settings, build
from services.crm.queries import add_dnc, dnc_contains
from tests.support import running, until
from voicebot import topics
from voicebot.bus import Bus, Event
from voicebot.config import Settings as BaseSettings
from voicebot.events import (
    ApprovedReply,
    BotText,
    ComplianceDecision,
    Contact,
    DialCommand,
    DialRequest,
    Outcome,
)

NOON_NEW_YORK = "2025-01-15T17:00:00Z"  # 12:00 EST, 02:00 in Tokyo


def watch(bus: Bus, tenant: str, *subs: tuple[str, type]) -> dict[str, list[Event]]:
    seen: dict[str, list[Event]] = {topic: [] for topic, _ in subs}
    group = f"watch-{uuid.uuid4().hex}"
    for topic, payload in subs:

        @bus.on(topic, payload, group=group)
        async def _keep(event: Event, topic: str = topic) -> None:
            if event.envelope.tenant_id == tenant:
                seen[topic].append(event)

    return seen


async def test_dial_checks_replies_and_opt_out(settings: BaseSettings, database_url: str) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    blocked_phone, allowed_phone, opted_phone = "+15550101001", "+15550101002", "+15550101003"
    add_dnc(database_url, tenant, blocked_phone)
    cfg = Settings(**{**settings.model_dump(), "database_url": database_url, "compliance_now": NOON_NEW_YORK})
    svc = build(cfg)
    client = Bus("test-client", settings)
    seen = watch(
        client,
        tenant,
        (topics.DECISIONS, ComplianceDecision),
        (topics.DIAL_COMMANDS, DialCommand),
        (topics.REPLIES, ApprovedReply),
    )
    await client.start()
    try:
        async with running(svc):

            async def dial(cid: str, phone: str, tz: str = "America/New_York") -> None:
                request = DialRequest(
                    contact=Contact(contact_id=cid, phone_e164=phone, timezone=tz), attempt=1, caller_id=""
                )
                await client.publish(
                    topics.DIAL_REQUESTS, request, tenant_id=tenant, campaign_id="acme-card", contact_id=cid
                )

            await dial("c-dnc", blocked_phone)
            await dial("c-ok", allowed_phone)
            await dial("c-night", allowed_phone, "Asia/Tokyo")
            decisions = await until(lambda: len(seen[topics.DECISIONS]) >= 3 and seen[topics.DECISIONS])
            by_contact = {e.payload.contact.contact_id: e.payload for e in decisions}
            assert by_contact["c-dnc"].allowed is False and by_contact["c-dnc"].rule == "dnc"
            assert by_contact["c-ok"].allowed is True
            night = by_contact["c-night"]
            assert not night.allowed and night.rule == "calling_window"
            assert night.retry_at_us == 1_736_982_000_000_000  # 2025-01-15 08:00 JST = 23:00Z on the 15th
            for d in by_contact.values():
                assert d.subject == ComplianceDecision.DIAL and d.ruleset_version.startswith("v")
            commands = await until(lambda: seen[topics.DIAL_COMMANDS])
            await asyncio.sleep(0.5)
            assert len(seen[topics.DIAL_COMMANDS]) == 1
            (command,) = commands
            assert command.payload.contact.contact_id == "c-ok"
            assert command.payload.decision_id == by_contact["c-ok"].decision_id
            assert command.payload.caller_id == "+15550100000"  # the campaign's
            assert command.envelope.contact_id == "c-ok" and command.envelope.campaign_id == "acme-card"

            # in-call: a forbidden phrase is replaced by the safe reply, clean text passes unchanged
            call = f"call-{uuid.uuid4().hex}"
            for seq, text in enumerate(["Approval is guaranteed approval for you.", "It has no annual fee."]):
                chunk = BotText(
                    turn_id="turn-1", seq=seq, text=text, final=seq == 1, end_call=False, sample_rate=8000
                )
                await client.publish(
                    topics.LLM_REPLIES, chunk, tenant_id=tenant, campaign_id="acme-card", call_id=call
                )
            replies = await until(lambda: len(seen[topics.REPLIES]) >= 2 and seen[topics.REPLIES])
            first, second = sorted((e.payload for e in replies), key=lambda r: r.seq)
            assert first.rewritten and "can't make promises" in first.text and "guaranteed" not in first.text
            assert not second.rewritten and second.text == "It has no annual fee." and second.final
            assert first.sample_rate == 8000 and first.turn_id == "turn-1"
            reply_decisions = await until(
                lambda: (
                    [e for e in seen[topics.DECISIONS] if e.payload.subject == ComplianceDecision.REPLY]
                    if len(seen[topics.DECISIONS]) >= 5
                    else None
                )
            )
            blocked = [e.payload for e in reply_decisions if not e.payload.allowed]
            assert len(blocked) == 1 and blocked[0].rule == "forbidden_phrase"
            assert blocked[0].decision_id == first.decision_id
            assert all(e.envelope.call_id == call for e in reply_decisions)

            # an opt-out joins the DNC set at once and the table too
            opt_out = Outcome(
                disposition="opted_out",
                opt_out=True,
                contact=Contact(contact_id="c-opt", phone_e164=opted_phone),
            )
            await client.publish(
                topics.OUTCOMES, opt_out, tenant_id=tenant, campaign_id="acme-card", call_id=call
            )
            await until(lambda: dnc_contains(database_url, tenant, opted_phone), timeout=20)
            await dial("c-opt", opted_phone)
            decision = await until(
                lambda: next(
                    (e.payload for e in seen[topics.DECISIONS] if e.payload.contact.contact_id == "c-opt"),
                    None,
                )
            )
            assert not decision.allowed and decision.rule == "dnc"
            assert not dnc_contains(database_url, "another-tenant", opted_phone)
    finally:
        await client.stop()
