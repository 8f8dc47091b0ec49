"""campaign: dial a contact list at the campaign's pace and follow every contact until it is finished.

Publishes DialRequest (key = contact_id) on DIAL_REQUESTS; a slot frees when the call ENDS (LIFECYCLE)
or compliance blocks the dial (DECISIONS). Each run reads both topics in its own consumer group from
the earliest offset (nothing is missed while the group joins) and ignores events older than the run.
`main(argv)` is what `python -m services.campaign` and `voicebot campaign start` call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import structlog
from pydantic import Field

from services.campaign.contacts import ContactRow, ContactsError, parse_contacts
from services.campaign.pacing import Pacer
from services.campaign.progress import Progress
from voicebot import observability, topics
from voicebot.bus import Event, now_us
from voicebot.campaigns import Campaign, CampaignBook, ScriptError
from voicebot.config import Settings as BaseSettings
from voicebot.config import load
from voicebot.events import CallLifecycle, ComplianceDecision, Contact, DialRequest, Envelope
from voicebot.service import Service

log = structlog.get_logger("campaign")


class Settings(BaseSettings):
    campaign_dial_timeout_s: float = Field(
        0,
        ge=0,
        description="a dial with no end after this long counts as timed out; 0: ring + max duration + 60 s",
    )
    campaign_tick_s: float = Field(
        0.05, gt=0, le=5, description="how often the pacing loop looks at the clock"
    )


@dataclass(slots=True)
class Run:
    """One campaign run: who to call and where progress goes; `summary` is filled when it finishes."""

    campaign: Campaign
    tenant: str
    contacts: list[ContactRow]
    out: TextIO = field(default_factory=lambda: sys.stdout)
    summary: dict[str, int] = field(default_factory=dict)
    finished: bool = False


def _contact(row: ContactRow) -> Contact:
    return Contact(
        contact_id=row.contact_id,
        phone_e164=row.phone,
        name=row.name,
        timezone=row.timezone,
        profile=row.profile,
    )


def build(settings: Settings, run: Run) -> Service:
    svc = Service("campaign", settings)
    campaign = run.campaign
    progress = Progress([c.contact_id for c in run.contacts])
    pacer = Pacer(campaign.pacing.calls_per_second, campaign.pacing.max_concurrent)
    timeout = settings.campaign_dial_timeout_s or (
        campaign.limits.ring_timeout_s + campaign.limits.max_duration_s + 60
    )
    group = f"campaign-run-{uuid.uuid4().hex[:12]}"
    started_us = now_us()
    tasks: list[asyncio.Task[None]] = []

    def report(cid: str, changed: bool) -> None:
        if changed:
            print(progress.line(cid), file=run.out, flush=True)

    def ours(env: Envelope, contact: Contact) -> str:
        """The contact id when the event belongs to this run, else ''."""
        cid = env.contact_id or contact.contact_id
        if env.tenant_id != run.tenant or env.campaign_id != campaign.id or env.occurred_at_us < started_us:
            return ""
        return cid if cid in progress.status else ""

    @svc.bus.on(topics.DECISIONS, ComplianceDecision, group=group, realtime=False)
    async def decision(event: Event[ComplianceDecision]) -> None:
        d = event.payload
        cid = ours(event.envelope, d.contact)
        if cid and d.subject == ComplianceDecision.DIAL:
            report(cid, progress.decided(cid, d.allowed))

    @svc.bus.on(topics.LIFECYCLE, CallLifecycle, group=group, realtime=False)
    async def lifecycle(event: Event[CallLifecycle]) -> None:
        change = event.payload
        cid = ours(event.envelope, change.contact)
        if not cid:
            return
        if change.kind == CallLifecycle.ANSWERED:
            report(cid, progress.answered_call(cid))
        elif change.kind == CallLifecycle.ENDED:
            if change.answered:
                progress.answered_call(cid)
            report(cid, progress.ended(cid))

    async def dial_all() -> None:
        while not svc.ready:
            await asyncio.sleep(0.01)
        queue = deque(run.contacts)
        clock = time.monotonic
        while not progress.done:
            for cid in progress.expire(clock(), timeout):
                log.warning("dial timed out", contact_id=cid)
                report(cid, True)
            wait = pacer.wait(clock(), progress.in_flight) if queue else None
            if wait == 0:
                row = queue.popleft()
                pacer.dialled(clock())
                report(row.contact_id, progress.dialled(row.contact_id, clock()))
                request = DialRequest(contact=_contact(row), attempt=1, caller_id=campaign.caller_id)
                await svc.bus.publish(
                    topics.DIAL_REQUESTS,
                    request,
                    tenant_id=run.tenant,
                    campaign_id=campaign.id,
                    contact_id=row.contact_id,
                )
                continue
            await asyncio.sleep(
                min(wait if wait is not None else settings.campaign_tick_s, settings.campaign_tick_s)
            )
        run.summary = progress.summary()
        run.finished = True
        print(
            "campaign {c} finished: {contacts} contacts, dialled={dialled} blocked={blocked} "
            "answered={answered} ended={ended} timed_out={timed_out}".format(c=campaign.id, **run.summary),
            file=run.out,
            flush=True,
        )
        svc.stop()

    @svc.on_start
    async def _start() -> None:
        tasks.append(asyncio.create_task(dial_all()))

    @svc.on_stop
    async def _stop() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return svc


def main(argv: list[str] | None = None) -> int:
    """`campaign CONTACTS.csv --campaign ID [--tenant T]`: 0 when every contact is finished."""
    parser = argparse.ArgumentParser(prog="python -m services.campaign", description="dial a contact list")
    parser.add_argument("contacts", type=Path, help="CSV with phone,name,timezone (+ profile columns)")
    parser.add_argument(
        "--campaign", required=True, help="campaign id (a YAML file in VOICEBOT_CAMPAIGNS_DIR)"
    )
    parser.add_argument("--tenant", default="", help="tenant id (default: the campaign's tenant)")
    parser.add_argument("--max-concurrent", type=int, default=0, help="override the campaign's pacing")
    args = parser.parse_args(argv)
    settings = load(Settings)
    observability.configure_logging("campaign", settings.log_level)
    try:
        campaign = CampaignBook(settings.campaigns_dir).get(args.campaign)
        if args.max_concurrent > 0:
            campaign.pacing.max_concurrent = args.max_concurrent
        text = args.contacts.read_text(encoding="utf-8")
        tenant = args.tenant or campaign.tenant
        contacts = parse_contacts(text, campaign.default_timezone, tenant)
    except (KeyError, ScriptError, ContactsError, OSError) as exc:
        print(f"campaign: {exc}", file=sys.stderr)
        return 2
    for problem in contacts.rejected:
        print(f"{args.contacts}:{problem.line}: skipped: {problem.message}", file=sys.stderr)
    for problem in contacts.duplicates:
        print(f"{args.contacts}:{problem.line}: duplicate: {problem.message}", file=sys.stderr)
    if not contacts.contacts:
        print(f"campaign: no valid contacts in {args.contacts}", file=sys.stderr)
        return 1
    print(
        f"campaign {campaign.id} (tenant {tenant}): {len(contacts.contacts)} contacts, "
        f"{len(contacts.rejected)} skipped, {len(contacts.duplicates)} duplicates dropped",
        flush=True,
    )
    run = Run(campaign=campaign, tenant=tenant, contacts=contacts.contacts)
    observability.configure_tracing("campaign")
    asyncio.run(build(settings, run).run())
    return 0 if run.finished else 1
