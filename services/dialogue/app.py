"""dialogue: call lifecycle and transcripts in, bot text (→ compliance), LLM requests and outcomes out.

Per-call state lives in memory keyed by call_id and is dropped on ENDED; `policy.py` decides, this
module only turns its actions into events.
"""

from __future__ import annotations

from collections import OrderedDict

import structlog
from pydantic import Field

from services.dialogue import policy
from voicebot import topics
from voicebot.bus import Event, new_id
from voicebot.campaigns import Campaign, CampaignBook
from voicebot.config import Settings as BaseSettings
from voicebot.events import (
    ApprovedReply,
    BotText,
    CallLifecycle,
    ChatTurn,
    Contact,
    Envelope,
    LlmRequest,
    Outcome,
    Transcript,
)
from voicebot.service import Service

log = structlog.get_logger("dialogue")


class Settings(BaseSettings):
    dialogue_max_reprompts: int = Field(
        2, ge=0, le=10, description="not-understood re-prompts before goodbye"
    )
    dialogue_llm_deadline_ms: int = Field(4000, ge=200, le=60_000, description="time the LLM has to answer")
    dialogue_llm_max_tokens: int = Field(120, ge=16, le=2048, description="longest LLM answer")
    dialogue_history_turns: int = Field(8, ge=0, le=100, description="past turns sent with an LLM request")
    dialogue_ended_calls: int = Field(
        10_000, ge=100, description="ended call ids remembered to ignore late events"
    )
    dialogue_sample_rate: int = Field(
        16_000, ge=8000, le=48_000, description="media rate when the call gave none"
    )


class Call:
    """One live call: the policy state plus what the events need (contact, media rate, campaign)."""

    def __init__(self, call_id: str, contact: Contact, sample_rate: int) -> None:
        profile = {"name": contact.name, **dict(contact.profile)}
        self.state = policy.CallState(call_id=call_id, profile=profile)
        self.contact = contact
        self.sample_rate = sample_rate


def build(settings: Settings) -> Service:
    svc = Service("dialogue", settings)
    book = CampaignBook(settings.campaigns_dir)
    calls: dict[str, Call] = {}
    ended: OrderedDict[str, None] = OrderedDict()

    def call_for(env: Envelope, contact: Contact | None = None, sample_rate: int = 0) -> Call | None:
        if env.call_id in ended or not env.call_id:
            return None
        call = calls.get(env.call_id)
        if call is None:
            call = calls[env.call_id] = Call(env.call_id, contact or Contact(), sample_rate)
        if contact is not None and contact.phone_e164 and not call.contact.phone_e164:
            call.contact = contact
            call.state.profile = {"name": contact.name, **dict(contact.profile)}
        if sample_rate and not call.sample_rate:
            call.sample_rate = sample_rate
        return call

    async def act(call: Call, campaign: Campaign, actions: list[policy.Action], cause: Envelope) -> None:
        for action in actions:
            if isinstance(action, policy.Say):
                turn_id = new_id()
                last = len(action.sentences) - 1
                for seq, sentence in enumerate(action.sentences):
                    text = BotText(
                        turn_id=turn_id,
                        seq=seq,
                        text=sentence,
                        final=seq == last,
                        end_call=action.end_call and seq == last,
                        grounded=True,
                        sample_rate=call.sample_rate or settings.dialogue_sample_rate,
                    )
                    await svc.bus.publish(topics.LLM_REPLIES, text, cause=cause)
            elif isinstance(action, policy.AskLlm):
                turn_id = new_id()
                call.state.llm_turns.add(turn_id)
                history = (
                    action.history[-settings.dialogue_history_turns :]
                    if settings.dialogue_history_turns
                    else ()
                )
                request = LlmRequest(
                    turn_id=turn_id,
                    question=action.question,
                    history=[ChatTurn(role=role, text=text) for role, text in history],
                    persona=f"{campaign.agent_name}, a polite phone assistant of {campaign.company}",
                    max_tokens=settings.dialogue_llm_max_tokens,
                    deadline_ms=settings.dialogue_llm_deadline_ms,
                    knowledge_base=_kb_ref(campaign, settings),
                    follow_up=action.follow_up,
                    profile=call.state.profile,
                )
                await svc.bus.publish(topics.LLM_REQUESTS, request, cause=cause)
            else:
                outcome = Outcome(
                    disposition=action.disposition,
                    opt_out=action.opt_out,
                    contact=call.contact,
                    turns=call.state.turns,
                    slots=dict(action.slots),
                )
                await svc.bus.publish(
                    topics.OUTCOMES, outcome, cause=cause, contact_id=call.contact.contact_id
                )
                log.info("outcome", disposition=action.disposition, turns=call.state.turns)

    @svc.bus.on(topics.LIFECYCLE, CallLifecycle)
    async def lifecycle(event: Event[CallLifecycle]) -> None:
        env, change = event.envelope, event.payload
        if change.kind not in (CallLifecycle.ANSWERED, CallLifecycle.ENDED):
            return
        call = call_for(env, change.contact, change.sample_rate)
        if call is None:
            return
        campaign = book.get(env.campaign_id)
        if change.kind == CallLifecycle.ANSWERED:
            await act(call, campaign, policy.on_answered(call.state, campaign), env)
            return
        if change.answered:
            call.state.answered = True
        await act(call, campaign, policy.on_ended(call.state), env)
        calls.pop(env.call_id, None)
        ended[env.call_id] = None
        if len(ended) > settings.dialogue_ended_calls:
            ended.popitem(last=False)

    @svc.bus.on(topics.TRANSCRIPTS, Transcript)
    async def transcript(event: Event[Transcript]) -> None:
        env, said = event.envelope, event.payload
        call = call_for(env)
        if call is None:
            return
        campaign = book.get(env.campaign_id)
        actions = policy.on_transcript(
            call.state,
            campaign,
            said.utterance_id or env.event_id,
            said.text,
            settings.dialogue_max_reprompts,
        )
        await act(call, campaign, actions, env)

    @svc.bus.on(topics.REPLIES, ApprovedReply, realtime=False)
    async def approved(event: Event[ApprovedReply]) -> None:
        call = calls.get(event.envelope.call_id)
        if call is not None:
            policy.on_bot_reply(call.state, event.payload.turn_id, event.payload.text)

    return svc


def _kb_ref(campaign: Campaign, settings: Settings) -> str:
    """The FAQ file relative to the campaigns folder (the llm service resolves it the same way)."""
    try:
        return str(campaign.knowledge_base.relative_to(settings.campaigns_dir.resolve()))
    except ValueError:
        return str(campaign.knowledge_base)
