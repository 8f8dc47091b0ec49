"""campaign on the real broker with the real compliance service: paces the dials and finishes."""

from __future__ import annotations

import asyncio
import io
import itertools
import uuid

from services.campaign.app import Run, Settings, build
from services.campaign.contacts import parse_contacts
from services.compliance.app import Settings as ComplianceSettings
from services.compliance.app import build as build_compliance
from services.crm.queries import add_dnc
from tests.support import running
from voicebot import topics
from voicebot.bus import Bus, Event
from voicebot.campaigns import CampaignBook
from voicebot.config import Settings as BaseSettings
from voicebot.events import CallLifecycle, DialCommand, DialRequest

CONTACTS = """\
phone,name,timezone,plan
+15550104001,Ada,America/New_York,gold
+15550104002,Alan,America/Chicago,
+15550104003,Grace,,silver
"""


async def test_campaign_paces_and_finishes(settings: BaseSettings, database_url: str) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    add_dnc(database_url, tenant, "+15550104002")
    campaign = CampaignBook(settings.campaigns_dir).get("acme-card")
    contacts = parse_contacts(CONTACTS, campaign.default_timezone, tenant).contacts
    out = io.StringIO()
    run = Run(campaign=campaign, tenant=tenant, contacts=contacts, out=out)
    compliance = build_compliance(
        ComplianceSettings(
            **{
                **settings.model_dump(),
                "database_url": database_url,
                "compliance_now": "2025-01-15T17:00:00Z",
            }
        )
    )

    # a stand-in for telephony: every approved dial is answered, then ends 0.3 s later
    phone = Bus("test-telephony", settings)
    requests: list[Event] = []
    group = f"watch-{uuid.uuid4().hex}"

    @phone.on(topics.DIAL_REQUESTS, DialRequest, group=group)
    async def _seen(event: Event) -> None:
        if event.envelope.tenant_id == tenant:
            requests.append(event)

    @phone.on(topics.DIAL_COMMANDS, DialCommand, group=group)
    async def _dial(event: Event) -> None:
        if event.envelope.tenant_id != tenant:
            return
        call = event.envelope
        call.call_id = f"call-{uuid.uuid4().hex}"
        contact = event.payload.contact
        await phone.publish(
            topics.LIFECYCLE, CallLifecycle(kind=CallLifecycle.ANSWERED, contact=contact), cause=call
        )
        await asyncio.sleep(0.3)
        ended = CallLifecycle(kind=CallLifecycle.ENDED, contact=contact, answered=True, sip_code=200)
        await phone.publish(topics.LIFECYCLE, ended, cause=call)

    await phone.start()
    try:
        async with running(compliance):
            svc = build(Settings(**settings.model_dump()), run)
            await asyncio.wait_for(svc.run(), 90)
    finally:
        await phone.stop()

    assert run.finished
    assert run.summary == {
        "contacts": 3,
        "dialled": 3,
        "blocked": 1,
        "answered": 2,
        "ended": 2,
        "timed_out": 0,
    }
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith(
        "campaign acme-card finished: 3 contacts, dialled=3 blocked=1 answered=2 ended=2"
    )
    assert any("blocked" in line and contacts[1].contact_id in line for line in lines)
    # paced at the campaign's 2 calls per second, keyed and addressed per contact
    assert len(requests) == 3
    times = sorted(e.envelope.occurred_at_us for e in requests)
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.45 for gap in gaps), gaps
    first = next(e for e in requests if e.envelope.contact_id == contacts[0].contact_id)
    assert first.envelope.campaign_id == "acme-card"
    assert first.payload.contact.profile == {"plan": "gold"} and first.payload.contact.name == "Ada"
    assert first.payload.caller_id == campaign.caller_id and first.payload.attempt == 1
    grace = next(e for e in requests if e.envelope.contact_id == contacts[2].contact_id)
    assert grace.payload.contact.timezone == "America/New_York"
