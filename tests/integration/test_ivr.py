"""ivr on the real broker and database, with compliance running: lifecycle events published as a media
worker would, routes read from the worker's inbox (callback of a missed call, business hours, menus)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from services.compliance.app import Settings as ComplianceSettings
from services.compliance.app import build as build_compliance
from services.ivr import history
from services.ivr.app import Settings, build
from tests.support import listening_bus, running, until
from voicebot import topics
from voicebot.broker import create_topics
from voicebot.bus import Bus, Event
from voicebot.db import connect
from voicebot.db.models import IvrRouting
from voicebot.events import ApprovedReply, BotText, CallCommand, CallLifecycle, Contact, Envelope, Transcript

NODE = f"ivr-test-{uuid.uuid4().hex[:8]}"
INBOX = topics.node_inbox(NODE)
NOW = datetime(2025, 1, 15, 17, 0, tzinfo=UTC)  # the routing clock: Wednesday 12:00 in New York
MAIN, MENU, DESK, LATE = "+15550100000", "+15550100001", "+15550100002", "+15550100003"
L = CallLifecycle
C = CallCommand

ROUTES = f"""\
timezone: America/New_York
callback_days: 7
tenants:
  demo: ["{MAIN}", "{MENU}", "{DESK}", "{LATE}"]
queues:
  front: "sip:front@127.0.0.1:5090"
  sales: "sip:sales@127.0.0.1:5090"
menus:
  main:
    campaign: acme-card
    prompt: For our credit card press 1 or say card. To speak with a person press 2 or say agent.
    timeout_ms: 1000
    options:
      - {{digit: "1", say: [card], campaign: acme-card}}
      - {{digit: "2", say: [agent, person], queue: sales}}
    default: {{queue: front}}
rules:
  - name: callback
    callback_of_campaign: acme-card
  - name: menu line
    number: "{MENU}"
    menu: main
  - name: desk open
    number: "{DESK}"
    days: [mon, tue, wed, thu, fri]
    hours: "09:00-17:00"
    queue: sales
  - name: evening desk open
    number: "{LATE}"
    hours: "18:00-22:00"
    queue: sales
  - name: after hours
    number: ["{DESK}", "{LATE}"]
    campaign: acme-card
default: {{queue: front}}
"""


@pytest.fixture(scope="module")
async def stack(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    """ivr and compliance in-process; tester buses play the media worker (inbox) and watch bot text."""
    await create_topics(kafka_bootstrap, {INBOX: 1})  # a media worker's inbox exists while the worker lives
    routes = tmp_path_factory.mktemp("ivr") / "routes.yaml"
    routes.write_text(ROUTES, encoding="utf-8")
    common = {"kafka_bootstrap": kafka_bootstrap, "database_url": database_url, "handler_retries": 2}
    ivr = build(Settings(**common, ivr_routes=routes, ivr_now=NOW.isoformat()))
    compliance = build_compliance(ComplianceSettings(**common))
    parts = (
        running(compliance, 60),
        running(ivr, 60),
        listening_bus(kafka_bootstrap, INBOX, CallCommand),
        listening_bus(kafka_bootstrap, topics.LLM_REPLIES, BotText),
        listening_bus(kafka_bootstrap, topics.REPLIES, ApprovedReply),
    )
    async with contextlib.AsyncExitStack() as stack:
        async with asyncio.TaskGroup() as group:  # each consumer group's join takes seconds: join at once
            started = [group.create_task(stack.enter_async_context(part)) for part in parts]
        _, _, worker, said, approved = (task.result() for task in started)
        yield {"worker": worker, "said": said, "approved": approved, "engine": connect(database_url)}


async def next_for(bus: Bus, call_id: str, timeout: float = 20) -> Event[Any]:
    """The next event of this call on the bus's topic (earlier calls' events are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            event = await bus.received.get()  # type: ignore[attr-defined]
            if event.envelope.call_id == call_id:
                return event


async def nothing_for(bus: Bus, call_id: str, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        event = await next_for(bus, call_id, seconds)
        pytest.fail(f"unexpected {type(event.payload).__name__}: {event.payload}")


def caller() -> str:
    return f"+1555{uuid.uuid4().int % 10**7:07d}"


async def inbound(bus: Bus, called: str, phone: str, **fields: Any) -> Envelope:
    """The ANSWERED a worker publishes for an inbound call no campaign answers yet."""
    env = Envelope(call_id=f"in-{uuid.uuid4().hex}", media_node=NODE)
    answered = L(
        kind=L.ANSWERED,
        direction=L.INBOUND,
        contact=Contact(phone_e164=phone),
        called_number=called,
        sample_rate=8000,
        sip_code=200,
    )
    return await bus.publish(topics.LIFECYCLE, answered, cause=env, **fields)


async def outbound_call(bus: Bus, phone: str, answered: bool) -> str:
    """DIALING then ENDED of a campaign call, as the worker reports it, an hour before the routing clock."""
    env = Envelope(
        call_id=f"out-{uuid.uuid4().hex}",
        tenant_id="demo",
        campaign_id="acme-card",
        contact_id="c-1",
        media_node="elsewhere-w0",
    )
    contact = Contact(contact_id="c-1", phone_e164=phone)
    at = int((NOW - timedelta(hours=1)).timestamp() * 1e6)
    dialing = L(kind=L.DIALING, direction=L.OUTBOUND, contact=contact, attempt=1)
    await bus.publish(topics.LIFECYCLE, dialing, cause=env, occurred_at_us=at)
    ended = L(
        kind=L.ENDED,
        direction=L.OUTBOUND,
        contact=contact,
        answered=answered,
        sip_code=480 if not answered else 200,
    )
    await bus.publish(topics.LIFECYCLE, ended, cause=env, occurred_at_us=at + 30_000_000)
    return env.call_id


def stored(engine: sa.Engine, call_id: str) -> tuple[str, str, str, str, str] | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                IvrRouting.kind, IvrRouting.target, IvrRouting.rule, IvrRouting.menu, IvrRouting.answer
            ).where(IvrRouting.call_id == call_id)
        ).first()
    return tuple(row) if row else None  # type: ignore[return-value]


async def test_callback_of_a_missed_campaign_call_reaches_that_campaigns_bot(stack: dict[str, Any]) -> None:
    worker, engine = stack["worker"], stack["engine"]
    missed, reached = caller(), caller()
    await outbound_call(worker, missed, answered=False)
    await outbound_call(worker, reached, answered=True)
    since = NOW - timedelta(days=7)
    await until(lambda: history.missed_calls(engine, "demo", missed, since))

    env = await inbound(worker, MAIN, missed)
    cmd = await next_for(worker, env.call_id)
    assert cmd.payload.kind == C.ROUTE and cmd.payload.target == "acme-card"
    assert cmd.payload.reason == "callback"
    assert (cmd.envelope.campaign_id, cmd.envelope.tenant_id) == ("acme-card", "demo")
    assert cmd.envelope.media_node == NODE
    await until(lambda: stored(engine, env.call_id))
    assert stored(engine, env.call_id) == ("campaign", "acme-card", "callback", "", "")

    # a replayed ANSWERED (same event id) and a second ANSWERED of the same call do not route it again
    again = L(kind=L.ANSWERED, direction=L.INBOUND, contact=Contact(phone_e164=missed), called_number=MAIN)
    redelivery = env.SerializeToString()  # the very bytes published first (same event id)
    await worker.broker.publish(redelivery, topics.LIFECYCLE, key=env.call_id.encode())
    await worker.publish(topics.LIFECYCLE, again, cause=env)
    await nothing_for(worker, env.call_id, 2.0)

    # the customer whose campaign call was answered is not a callback: the table's default takes it
    other = await inbound(worker, MAIN, reached)
    cmd = await next_for(worker, other.call_id)
    assert cmd.payload.kind == C.TRANSFER and cmd.payload.target == "sip:front@127.0.0.1:5090"
    assert cmd.payload.mode == "blind" and cmd.payload.reason == "default"


async def test_business_hours_go_to_a_human_queue_after_hours_to_the_bot(stack: dict[str, Any]) -> None:
    worker = stack["worker"]
    desk = await inbound(worker, DESK, caller())  # Wednesday 12:00: the desk is open
    cmd = await next_for(worker, desk.call_id)
    assert (cmd.payload.kind, cmd.payload.target, cmd.payload.mode) == (
        C.TRANSFER,
        "sip:sales@127.0.0.1:5090",
        "blind",
    )
    assert cmd.payload.reason == "desk open" and cmd.envelope.tenant_id == "demo"
    late = await inbound(worker, LATE, caller())  # the evening desk opens at 18:00
    cmd = await next_for(worker, late.call_id)
    assert (cmd.payload.kind, cmd.payload.target, cmd.payload.reason) == (C.ROUTE, "acme-card", "after hours")


async def test_menu_prompt_passes_compliance_then_a_digit_routes(stack: dict[str, Any]) -> None:
    worker, said, approved, engine = stack["worker"], stack["said"], stack["approved"], stack["engine"]
    env = await inbound(worker, MENU, caller())
    prompt = await next_for(said, env.call_id)
    assert prompt.payload.text.startswith("For our credit card press 1")
    assert prompt.payload.final and prompt.payload.sample_rate == 8000
    assert (prompt.envelope.campaign_id, prompt.envelope.tenant_id) == ("acme-card", "demo")
    collect = await next_for(worker, env.call_id)
    assert (collect.payload.kind, collect.payload.max_digits, collect.payload.timeout_ms) == (
        C.COLLECT_DTMF,
        1,
        1000,
    )
    reply = await next_for(approved, env.call_id)  # compliance checked it under the menu's campaign
    assert reply.payload.turn_id == prompt.payload.turn_id and not reply.payload.rewritten
    assert reply.payload.text == prompt.payload.text

    dtmf = L(kind=L.DTMF, direction=L.INBOUND, dtmf="2", dtmf_method="rfc2833")
    await worker.publish(topics.LIFECYCLE, dtmf, cause=env)
    stop = await next_for(worker, env.call_id)  # keyed over the prompt: the rest of it is dropped
    assert stop.payload.kind == C.STOP_PLAYBACK
    cmd = await next_for(worker, env.call_id)
    assert (cmd.payload.kind, cmd.payload.target) == (C.TRANSFER, "sip:sales@127.0.0.1:5090")
    assert cmd.payload.reason == "menu main option 2"
    await until(lambda: stored(engine, env.call_id))
    assert stored(engine, env.call_id) == ("queue", "sales", "menu main option 2", "main", "digits 2")


async def test_menu_speech_reprompts_on_no_match_then_routes_by_keyword(stack: dict[str, Any]) -> None:
    worker, said = stack["worker"], stack["said"]
    env = await inbound(worker, MENU, caller())
    first = await next_for(said, env.call_id)
    assert (await next_for(worker, env.call_id)).payload.kind == C.COLLECT_DTMF
    hello = Transcript(utterance_id="u1", text="Hello? Is anyone there?")
    await worker.publish(topics.TRANSCRIPTS, hello, cause=env)
    assert (await next_for(worker, env.call_id)).payload.kind == C.STOP_PLAYBACK  # spoke over the prompt
    second = await next_for(said, env.call_id)
    assert second.payload.text.startswith("Sorry, I didn't get that. For our credit card")
    assert second.payload.turn_id != first.payload.turn_id
    assert (await next_for(worker, env.call_id)).payload.kind == C.COLLECT_DTMF
    card = Transcript(utterance_id="u2", text="The card, please.")
    await worker.publish(topics.TRANSCRIPTS, card, cause=env)
    assert (await next_for(worker, env.call_id)).payload.kind == C.STOP_PLAYBACK
    cmd = await next_for(worker, env.call_id)
    assert (cmd.payload.kind, cmd.payload.target, cmd.payload.reason) == (
        C.ROUTE,
        "acme-card",
        "menu main option 1",
    )


async def test_menu_without_an_answer_goes_to_its_default_and_a_hang_up_is_recorded(
    stack: dict[str, Any],
) -> None:
    worker, said, engine = stack["worker"], stack["said"], stack["engine"]
    env = await inbound(worker, MENU, caller())
    for attempt in (1, 2):
        prompt = await next_for(said, env.call_id)
        assert prompt.payload.text.startswith("Sorry" if attempt == 2 else "For our")
        assert (await next_for(worker, env.call_id)).payload.kind == C.COLLECT_DTMF
        finished = L(kind=L.PLAYBACK_FINISHED, direction=L.INBOUND, turn_id=prompt.payload.turn_id)
        await worker.publish(topics.LIFECYCLE, finished, cause=env)  # then silence: 1 s of no input
    cmd = await next_for(worker, env.call_id, timeout=10)
    assert (cmd.payload.kind, cmd.payload.target, cmd.payload.reason) == (
        C.TRANSFER,
        "sip:front@127.0.0.1:5090",
        "menu main default",
    )

    gone = await inbound(worker, MENU, caller())
    await next_for(said, gone.call_id)
    ended = L(kind=L.ENDED, direction=L.INBOUND, answered=True, hangup_by="customer")
    await worker.publish(topics.LIFECYCLE, ended, cause=gone)
    await until(lambda: stored(engine, gone.call_id))
    assert stored(engine, gone.call_id) == ("abandoned", "", "", "main", "")
    assert (await next_for(worker, gone.call_id)).payload.kind == C.COLLECT_DTMF
    await nothing_for(worker, gone.call_id, 2.5)  # no re-prompt, no route for a call that ended
