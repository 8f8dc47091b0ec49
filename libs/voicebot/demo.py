"""`make run`: the whole platform on this machine with a demo campaign of simulated customers.

Starts the broker, every service and the simulated customers (real SIP on loopback), runs the demo
campaign, prints a live line per call event, then a summary table from the CRM, and stops everything
(Ctrl-C too). The demo keeps its records in its own database schema, recreated at each run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import signal
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from voicebot import db, topics
from voicebot.bus import Bus, Event
from voicebot.config import REPO_ROOT, Settings
from voicebot.events import (
    ApprovedReply,
    CallLifecycle,
    ComplianceDecision,
    Outcome,
    Transcript,
)
from voicebot.observability import mask_phone
from voicebot.stack import Stack
from voicebot.timeline import voice_to_voice

DEMO = REPO_ROOT / "demo"
KIND = CallLifecycle.Kind


def fresh_database(schema: str) -> str:
    """A clean database for one run: its own PostgreSQL schema, or a new SQLite file."""
    url = Settings().resolved_database_url()
    if not url.startswith("postgresql"):
        path = REPO_ROOT / "var" / f"{schema}.db"
        path.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return f"{url}?options=-csearch_path%3D{schema}"


CALL_MOMENTS = {  # what happened inside a call, as one demo line
    KIND.AMD_VERDICT: lambda p: f"answered by {CallLifecycle.Amd.Name(p.amd).lower()} ({p.amd_reason})",
    KIND.BEEP: lambda p: f"voicemail beep ({p.amd_reason}): leaving the message",
    KIND.BARGE_IN: lambda p: f"customer talks over the bot after {p.played_ms} ms: reply cut",
    KIND.DTMF: lambda p: f"keypad     {p.dtmf} ({p.dtmf_method})",
    KIND.BRIDGED: lambda p: f"bridged to the agent {p.transfer_target} ({p.transfer_mode} transfer)",
    KIND.TRANSFERRED: lambda p: f"transferred to {p.transfer_target} ({p.transfer_mode})",
    KIND.TRANSFER_FAILED: lambda p: f"transfer to {p.transfer_target} failed: {p.sip_code} {p.sip_reason}",
}


class Watcher:
    """Prints one line per call event as it happens and keeps per-call latencies for the summary."""

    def __init__(self, bootstrap: str) -> None:
        self.bus = Bus("demo", Settings(kafka_bootstrap=bootstrap))
        self.names: dict[str, str] = {}  # contact_id → first name, learnt from the events
        self.t0_us = time.time_ns() // 1000
        self.latency: dict[str, list[float]] = {}
        group = f"demo-{uuid.uuid4().hex[:8]}"
        on = self.bus.on
        on(topics.LIFECYCLE, CallLifecycle, group=group, realtime=False)(self.lifecycle)
        on(topics.DECISIONS, ComplianceDecision, group=group, realtime=False)(self.decision)
        on(topics.TRANSCRIPTS, Transcript, group=group, realtime=False)(self.transcript)
        on(topics.REPLIES, ApprovedReply, group=group, realtime=False)(self.reply)
        on(topics.OUTCOMES, Outcome, group=group, realtime=False)(self.outcome)

    def line(self, env, text: str) -> None:
        who = self.names.get(env.contact_id, env.contact_id[:8])
        at = (env.occurred_at_us - self.t0_us) / 1e6  # when it happened: topics arrive in batches
        print(f"{at:7.2f}s  {who:<9} {text}", flush=True)

    async def lifecycle(self, event: Event[CallLifecycle]) -> None:
        p = event.payload
        self.names.setdefault(event.envelope.contact_id, p.contact.name.split(" ")[0])
        kind = KIND.Name(p.kind)
        if p.kind == KIND.PLAYBACK_STARTED:
            v2v = voice_to_voice(event.envelope.marks)
            if v2v is not None:
                self.latency.setdefault(event.envelope.call_id, []).append(v2v)
                self.line(
                    event.envelope, f"bot starts speaking {v2v * 1000:.0f} ms after the customer stopped"
                )
            return
        if p.kind in (KIND.PLAYBACK_FINISHED, KIND.SPEECH_STARTED, KIND.RECORDING_READY):
            return
        if p.kind in CALL_MOMENTS:
            self.line(event.envelope, CALL_MOMENTS[p.kind](p))
            return
        detail = f" {p.sip_code} {p.sip_reason}" if p.kind == KIND.ENDED else ""
        phone = mask_phone(p.contact.phone_e164)
        self.line(event.envelope, f"{kind.lower():<10} {phone}{detail}")

    async def decision(self, event: Event[ComplianceDecision]) -> None:
        d = event.payload
        if d.contact.name:
            self.names.setdefault(event.envelope.contact_id, d.contact.name.split(" ")[0])
        if d.subject == ComplianceDecision.DIAL:
            verdict = "allowed" if d.allowed else f"BLOCKED by {d.rule}: {d.reason}"
            self.line(event.envelope, f"pre-dial   {mask_phone(d.contact.phone_e164)} {verdict}")
        elif not d.allowed:
            self.line(event.envelope, f"reply rewritten by compliance ({d.rule})")

    async def transcript(self, event: Event[Transcript]) -> None:
        self.line(event.envelope, f'customer:  "{event.payload.text}"')

    async def reply(self, event: Event[ApprovedReply]) -> None:
        self.line(event.envelope, f'bot:       "{event.payload.text}"')

    async def outcome(self, event: Event[Outcome]) -> None:
        self.line(event.envelope, f"outcome    {event.payload.disposition}")


def summary(
    url: str,
    tenant: str,
    campaign: str,
    phones: list[str],
    latency: dict[str, list[float]],
    names: dict[str, str],
) -> str:
    """The CRM's view of the run (its read API): one row per call, then the contacts never dialled."""
    from services.crm import queries

    rows = []
    called = set()
    for c in queries.campaign_report(url, tenant, campaign):
        called.add(c.phone)
        said = next(
            (
                t.text
                for t in queries.transcript(url, tenant, c.call_id)
                if t.speaker == "customer" and t.text
            ),
            "",
        )
        lat = latency.get(c.call_id, [])
        mean = f"{statistics.fmean(lat) * 1000:.0f}" if lat else "-"
        name = names.get(c.contact_id, c.contact_id[:8])
        turns = str(c.customer_turns + c.bot_turns)
        rows.append((name, mask_phone(c.phone), c.state or "-", c.disposition or "-", turns, mean, said[:40]))
    for phone in phones:
        blocked = [d for d in queries.decisions_for_phone(url, tenant, phone, "dial") if not d.allowed]
        if phone not in called and blocked:
            d = blocked[-1]
            name = names.get(d.contact_id, d.contact_id[:8])
            rows.append((name, mask_phone(phone), "not dialled", f"blocked: {d.rule}", "0", "-", ""))
    header = ("contact", "phone", "call", "outcome", "turns", "v2v ms", "customer said (as heard)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows]
    )


async def wait_for_outcomes(url: str, since: datetime, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    engine = db.connect(url)
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            done = conn.execute(
                sa.select(sa.func.count()).select_from(db.OutcomeRow).where(db.OutcomeRow.at >= since)
            ).scalar()
        if done >= expected:
            return
        await asyncio.sleep(0.5)


async def run(contacts: Path, personas: Path, campaign: str, dnc: list[str]) -> int:
    with contacts.open(newline="") as f:
        rows = list(csv.DictReader(f))
    url = fresh_database("voicebot_demo")
    tenant = "demo"
    for phone in dnc:
        db.add_dnc(url, tenant, phone, source="demo seed")
    since = datetime.now(UTC)
    workdir = REPO_ROOT / "var" / "demo"
    print(
        f"starting broker, services and simulated customers (logs in {workdir.relative_to(REPO_ROOT)}/) ..."
    )
    now = os.environ.get("VOICEBOT_COMPLIANCE_NOW") or datetime.now(UTC).strftime("%Y-%m-%dT18:00:00+00:00")
    stack = Stack(workdir, personas=personas, database_url=url, extra_env={"VOICEBOT_COMPLIANCE_NOW": now})
    watcher: Watcher | None = None
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C: stop everything, in order, whatever is running
        loop.add_signal_handler(sig, interrupted.set)
    try:
        await asyncio.to_thread(stack.start)
        if interrupted.is_set():
            return 130
        print(f"ready; compliance clock pinned to {now} so the demo runs at any hour\n", flush=True)
        watcher = Watcher(stack.bootstrap)
        await watcher.bus.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.campaign",
            str(contacts),
            "--campaign",
            campaign,
            cwd=REPO_ROOT,
            env=stack.env(),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        finished = asyncio.create_task(proc.wait())
        await asyncio.wait({finished, asyncio.create_task(interrupted.wait())}, return_when="FIRST_COMPLETED")
        if interrupted.is_set():
            print("\ninterrupted: stopping everything ...", flush=True)
            proc.terminate()
            await finished
            return 130
        code = finished.result()
        await wait_for_outcomes(url, since, expected=len(rows) - len(dnc), timeout=20)
        await asyncio.sleep(1)
        phones = [r["phone"] for r in rows]
        print("\n" + summary(url, tenant, campaign, phones, watcher.latency, watcher.names))
        all_lat = [v for values in watcher.latency.values() for v in values]
        if all_lat:
            print(
                f"\nvoice-to-voice over {len(all_lat)} turns: p50 {statistics.median(all_lat) * 1000:.0f} ms"
            )
        return code
    finally:
        if watcher is not None:
            await watcher.bus.stop()
        await asyncio.to_thread(stack.stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        print("stopped everything")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voicebot demo", description=__doc__)
    parser.add_argument("--contacts", type=Path, default=DEMO / "contacts.csv")
    parser.add_argument("--personas", type=Path, default=DEMO / "personas.yaml")
    parser.add_argument("--campaign", default="acme-card")
    parser.add_argument("--dnc", nargs="*", default=["+15550100005"], help="numbers seeded on the DNC list")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.contacts, args.personas, args.campaign, args.dnc))


if __name__ == "__main__":
    sys.exit(main())
