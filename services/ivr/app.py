"""ivr: routes inbound calls that no campaign answers yet (ANSWERED, INBOUND, empty campaign_id).

`routing.py` decides; this module only turns decisions into events on the call's media worker inbox:
ROUTE (target = campaign id: the worker binds the call to it and reports ANSWERED again, so the bot
flow starts) or TRANSFER (target = a queue's SIP URI, blind). A menu's prompt is bot text on
`llm.replies` sent under the menu's campaign (its compliance rules check the prompt), then COLLECT_DTMF;
the answer comes back as a DTMF lifecycle event or a transcript. Outbound campaign calls are remembered
in the database (a second consumer group, off the call path) so that a missed call's callback reaches
that campaign's bot. Menu state lives in memory per call; routing decisions are stored, so a replayed
ANSWERED never routes a call twice, even after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import Counter
from pydantic import Field, field_validator
from sqlalchemy.engine import Engine

from services.ivr import history, routing
from voicebot import config, topics
from voicebot.bus import Event, new_id, now_us
from voicebot.campaigns import CampaignBook
from voicebot.config import REPO_ROOT
from voicebot.config import Settings as BaseSettings
from voicebot.db import connect, upgrade
from voicebot.events import BotText, CallCommand, CallLifecycle, Envelope, Transcript
from voicebot.service import Service

log = structlog.get_logger("ivr")

ROUTES_TOTAL = Counter("voicebot_ivr_routes_total", "inbound calls routed", ["kind"])
MENU_ANSWERS_TOTAL = Counter("voicebot_ivr_menu_answers_total", "menu answers", ["how", "matched"])


class Settings(BaseSettings):
    ivr_routes: Path = Field(REPO_ROOT / "ivr" / "routes.yaml", description="the routing table (YAML)")
    ivr_sample_rate: int = Field(
        16_000, ge=8000, le=48_000, description="media rate of a menu prompt when ANSWERED gives none"
    )
    ivr_prompt_max_s: float = Field(
        30.0,
        gt=0,
        le=300,
        description="longest wait for a prompt's PLAYBACK_FINISHED before the no-input timer",
    )
    ivr_remembered_calls: int = Field(
        10_000, ge=100, description="routed or ended call ids remembered so late events never act twice"
    )
    ivr_prune_interval_s: float = Field(
        3600.0, gt=0, description="how often outbound calls too old for a callback are forgotten"
    )
    ivr_max_answer_age_s: float = Field(
        60.0,
        gt=0,
        description="an older inbound ANSWERED is not routed (nobody waits that long; a new "
        "consumer group reads old events)",
    )
    ivr_now: str = Field(
        "",
        description="pin the routing clock (ISO 8601; no zone = UTC) for tests and demos; empty: real clock",
    )

    @field_validator("ivr_now")
    @classmethod
    def _iso(cls, value: str) -> str:
        return config.check_pinned_clock(value)

    def now_utc(self) -> datetime:
        return config.pinned_now(self.ivr_now)


@dataclass
class MenuCall:
    """An inbound call inside a menu: which menu, which attempt, the prompt it is waiting on."""

    cause: Envelope  # the ANSWERED event: call id, media node
    tenant: str
    called: str
    menu: str
    sample_rate: int
    attempt: int = 1
    prompt_turn: str = ""
    playing: bool = False
    timer: asyncio.TimerHandle | None = None


def build(settings: Settings) -> Service:
    svc = Service("ivr", settings)
    book = CampaignBook(settings.campaigns_dir)
    tenant_of = {c.id: c.tenant for c in book}
    table = routing.load_routes(settings.ivr_routes, tenant_of)
    url = settings.resolved_database_url()
    engine: list[Engine] = []
    menus: dict[str, MenuCall] = {}
    done: OrderedDict[str, None] = OrderedDict()
    lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def forget(call_id: str) -> MenuCall | None:
        call = menus.pop(call_id, None)
        if call is not None and call.timer is not None:
            call.timer.cancel()
        done[call_id] = None
        if len(done) > settings.ivr_remembered_calls:
            done.popitem(last=False)
        return call

    async def command(cause: Envelope, cmd: CallCommand, **fields: str) -> None:
        await svc.bus.publish(topics.node_inbox(cause.media_node), cmd, cause=cause, **fields)

    async def send(
        call_id: str, cause: Envelope, tenant: str, called: str, route: routing.Route, **why: str
    ) -> None:
        """The final step: hand the call to a campaign's bot or a human queue, then store the decision."""
        if route.kind == "campaign":
            cmd = CallCommand(kind=CallCommand.ROUTE, target=route.target, reason=route.rule)
            await command(cause, cmd, tenant_id=tenant_of[route.target], campaign_id=route.target)
        else:
            cmd = CallCommand(kind=CallCommand.TRANSFER, target=route.target, mode="blind", reason=route.rule)
            await command(cause, cmd, tenant_id=tenant)
        forget(call_id)
        ROUTES_TOTAL.labels(route.kind).inc()
        log.info("call routed", kind=route.kind, to=route.queue or route.target, rule=route.rule, **why)
        await asyncio.to_thread(history.save_decision, engine[0], call_id, tenant, called, route, **why)

    async def prompt(call: MenuCall) -> None:
        menu = table.menus[call.menu]
        call.prompt_turn = new_id()
        text = BotText(
            turn_id=call.prompt_turn,
            seq=0,
            text=menu.prompt_for(call.attempt),
            final=True,
            grounded=True,
            sample_rate=call.sample_rate,
        )
        await svc.bus.publish(
            topics.LLM_REPLIES,
            text,
            cause=call.cause,
            tenant_id=tenant_of[menu.campaign],
            campaign_id=menu.campaign,
        )
        collect = CallCommand(
            kind=CallCommand.COLLECT_DTMF, max_digits=menu.max_digits, timeout_ms=menu.timeout_ms
        )
        await command(call.cause, collect, tenant_id=call.tenant)
        call.playing = True
        arm(call, settings.ivr_prompt_max_s + menu.timeout_ms / 1000)

    def arm(call: MenuCall, seconds: float) -> None:
        """No answer within `seconds` counts as a wrong answer (re-prompt, then the menu's default)."""
        if call.timer is not None:
            call.timer.cancel()
        call_id, turn = call.cause.call_id, call.prompt_turn
        loop = asyncio.get_running_loop()
        call.timer = loop.call_later(seconds, lambda: spawn(no_input(call_id, turn)))

    async def no_input(call_id: str, turn: str) -> None:
        try:
            async with lock:
                call = menus.get(call_id)
                if call is not None and call.prompt_turn == turn:
                    MENU_ANSWERS_TOTAL.labels("none", "no").inc()
                    await step(call, None, "no input")
        except Exception:  # a timer is outside any consumer loop: log, never crash the service
            log.exception("no-input step failed")

    async def step(call: MenuCall, option: routing.Option | None, answer: str) -> None:
        nxt = routing.after_answer(table, call.menu, call.attempt, option)
        if call.playing:  # answered over the prompt: the rest of it must not play before what comes next
            await command(call.cause, CallCommand(kind=CallCommand.STOP_PLAYBACK, reason="ivr answer"))
            call.playing = False
        if isinstance(nxt, routing.Reprompt):
            call.attempt = nxt.attempt
            await prompt(call)
        elif nxt.kind == "menu":
            call.menu, call.attempt = nxt.target, 1
            await prompt(call)
        else:
            why = {"menu": call.menu, "answer": answer}
            await send(call.cause.call_id, call.cause, call.tenant, call.called, nxt, **why)

    async def answered(env: Envelope, change: CallLifecycle) -> None:
        call_id = env.call_id
        if call_id in done or call_id in menus:
            return
        if not env.media_node:
            log.error("inbound call without media_node: cannot reach its worker")
            return
        if env.occurred_at_us and now_us() - env.occurred_at_us > settings.ivr_max_answer_age_s * 1e6:
            log.warning("stale inbound call not routed", age_s=round((now_us() - env.occurred_at_us) / 1e6))
            return
        if await asyncio.to_thread(history.decided, engine[0], call_id):
            done[call_id] = None
            return
        at = settings.now_utc()
        called = routing.normalise_number(change.called_number)
        caller = routing.normalise_number(change.contact.phone_e164)
        tenant = table.tenant_of(called)
        missed: list[routing.MissedCall] = []
        if table.uses_history and tenant and caller:
            since = at - timedelta(days=table.callback_days)
            missed = await asyncio.to_thread(history.missed_calls, engine[0], tenant, caller, since)
        decision = routing.route(table, routing.InboundCall(called, caller, at), missed, tenant_of)
        if decision.kind != "menu":
            await send(call_id, env, tenant, called, decision)
            return
        rate = change.sample_rate or settings.ivr_sample_rate
        call = MenuCall(env, tenant, called, decision.target, rate)
        await prompt(call)
        menus[call_id] = call  # only now: a failed prompt is retried with the event
        log.info("menu started", menu=decision.target, rule=decision.rule)

    async def answer(call_id: str, digits: str | None = None, said: str | None = None) -> None:
        call = menus.get(call_id)
        if call is None:
            return
        menu = table.menus[call.menu]
        if digits is not None:
            option, how = routing.match_digits(menu, digits), f"digits {digits}" if digits else "no input"
        else:
            option, how = routing.match_speech(menu, said or ""), "speech"
        MENU_ANSWERS_TOTAL.labels("speech" if said is not None else "dtmf", "yes" if option else "no").inc()
        await step(call, option, how)

    @svc.on_start
    async def _open() -> None:
        engine.append(connect(url))
        await asyncio.to_thread(upgrade, engine[0])
        spawn(prune_forever())
        log.info("routing table loaded", rules=len(table.rules), menus=len(table.menus))

    async def prune_forever() -> None:
        while True:
            before = datetime.now(UTC) - timedelta(days=table.callback_days + 1)
            try:
                gone = await asyncio.to_thread(history.prune, engine[0], before)
                if gone:
                    log.info("old outbound calls forgotten", rows=gone)
            except Exception as exc:  # the database may be briefly away: try again next round
                log.warning("prune failed", error=str(exc))
            await asyncio.sleep(settings.ivr_prune_interval_s)

    @svc.on_stop
    async def _stop() -> None:
        for call in menus.values():
            if call.timer is not None:
                call.timer.cancel()
        for task in list(tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @svc.bus.on(topics.LIFECYCLE, CallLifecycle)
    async def lifecycle(event: Event[CallLifecycle]) -> None:
        env, change = event.envelope, event.payload
        kind = change.kind
        async with lock:
            if kind == CallLifecycle.ANSWERED:
                if change.direction == CallLifecycle.INBOUND and not env.campaign_id:
                    await answered(env, change)
            elif kind == CallLifecycle.DTMF:
                await answer(env.call_id, digits=change.dtmf)
            elif kind == CallLifecycle.PLAYBACK_FINISHED:
                call = menus.get(env.call_id)
                if call is not None and change.turn_id == call.prompt_turn:
                    call.playing = False
                    arm(call, table.menus[call.menu].timeout_ms / 1000)
            elif kind == CallLifecycle.ENDED and change.direction == CallLifecycle.INBOUND:
                call = forget(env.call_id)
                if call is not None:  # hung up inside a menu
                    ROUTES_TOTAL.labels("abandoned").inc()
                    await asyncio.to_thread(
                        history.save_decision,
                        engine[0],
                        env.call_id,
                        call.tenant,
                        call.called,
                        None,
                        call.menu,
                    )

    @svc.bus.on(topics.TRANSCRIPTS, Transcript)
    async def transcript(event: Event[Transcript]) -> None:
        async with lock:
            await answer(event.envelope.call_id, said=event.payload.text)

    # Outbound calls are recorded off the call path, in a consumer group of their own. dedupe=False: this
    # bus already marks these event ids seen in the routing group, and a replayed write changes nothing.
    @svc.bus.on(topics.LIFECYCLE, CallLifecycle, group="ivr-history", realtime=False, dedupe=False)
    async def outbound(event: Event[CallLifecycle]) -> None:
        if history.worth_recording(event.envelope, event.payload):
            await asyncio.to_thread(history.record, engine[0], event.envelope, event.payload)

    return svc
