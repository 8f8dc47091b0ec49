"""dialogue: call lifecycle and transcripts in, bot text (→ compliance), LLM requests and outcomes out.

Per-call state lives in memory keyed by call_id and is dropped on ENDED; `policy.py` decides, this
module only turns its actions into events.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import structlog
from pydantic import Field

from services.dialogue import policy, turns
from voicebot import topics
from voicebot.bus import Event, new_id, now_us
from voicebot.campaigns import Campaign, CampaignBook
from voicebot.config import Settings as BaseSettings
from voicebot.events import (
    ApprovedReply,
    BotText,
    CallCommand,
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
    dialogue_turn_gate: bool = Field(
        True, description="hold an unfinished phrase for more speech (false: every transcript is a turn)"
    )
    dialogue_turn_hold_unsure_ms: int = Field(
        1200, ge=0, le=10_000, description="silence after a phrase that may be unfinished before answering"
    )
    dialogue_turn_hold_incomplete_ms: int = Field(
        1500, ge=0, le=10_000, description="silence after an unfinished phrase before answering anyway"
    )
    dialogue_turn_resume_wait_ms: int = Field(
        8000, ge=500, le=60_000, description="how long held text waits for the transcript of resumed speech"
    )
    dialogue_turn_max_parts: int = Field(
        4, ge=1, le=20, description="utterances joined into one turn at most"
    )

    def turn_config(self) -> turns.TurnConfig:
        return turns.TurnConfig(
            semantic=self.dialogue_turn_gate,
            hold_unsure_ms=self.dialogue_turn_hold_unsure_ms,
            hold_incomplete_ms=self.dialogue_turn_hold_incomplete_ms,
            resume_wait_ms=self.dialogue_turn_resume_wait_ms,
            max_parts=self.dialogue_turn_max_parts,
        )


class Call:
    """One live call: the policy state plus what the events need (contact, media rate, campaign)."""

    def __init__(
        self, call_id: str, contact: Contact, sample_rate: int, turn: turns.TurnConfig | None = None
    ) -> None:
        profile = {"name": contact.name, **dict(contact.profile)}
        self.state = policy.CallState(call_id=call_id, profile=profile)
        self.contact = contact
        self.sample_rate = sample_rate
        self.gate = turns.TurnGate(turn or turns.TurnConfig())
        self.cause: Envelope | None = None  # the last transcript's envelope: a held turn answers it
        self._timer: asyncio.Task[None] | None = None

    def wake_at(self, until_us: int, wake: Callable[[], Awaitable[None]]) -> None:
        """Run `wake` at wall-clock `until_us`, instead of any earlier wake-up."""
        self.stop_waiting()
        self._timer = asyncio.create_task(self._sleep_then(until_us, wake))

    def stop_waiting(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _sleep_then(self, until_us: int, wake: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(max(0.0, (until_us - now_us()) / 1e6))
        self._timer = None  # awake: a newer decision no longer cancels what this one does
        try:
            await wake()
        except Exception:  # no bus retry out here: log, the next transcript goes on
            log.exception("held turn failed")


def build(settings: Settings) -> Service:
    svc = Service("dialogue", settings)
    book = CampaignBook(settings.campaigns_dir)
    calls: dict[str, Call] = {}
    ended: OrderedDict[str, None] = OrderedDict()
    turn_config = settings.turn_config()

    def call_for(env: Envelope, contact: Contact | None = None, sample_rate: int = 0) -> Call | None:
        if env.call_id in ended or not env.call_id or not env.campaign_id:
            return None  # an inbound call not yet routed to a campaign belongs to the IVR
        call = calls.get(env.call_id)
        if call is None:
            call = calls[env.call_id] = Call(env.call_id, contact or Contact(), sample_rate, turn_config)
        if contact is not None and contact.phone_e164 and not call.contact.phone_e164:
            call.contact = contact
            call.state.profile = {"name": contact.name, **dict(contact.profile)}
        if sample_rate and not call.sample_rate:
            call.sample_rate = sample_rate
        return call

    async def act(call: Call, campaign: Campaign, actions: list[policy.Action], cause: Envelope) -> None:
        said = ""  # the reply a following command waits for ("connecting you now", then the transfer)
        for action in actions:
            if isinstance(action, policy.Say):
                turn_id = said = new_id()
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
            elif isinstance(action, policy.Command):
                command = CallCommand(
                    kind=COMMANDS[action.kind],
                    target=action.target,
                    mode=action.mode,
                    summary=action.summary,
                    after_turn_id=said,
                )
                await svc.bus.publish(topics.node_inbox(cause.media_node), command, cause=cause)
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
        if change.kind == CallLifecycle.SPEECH_STARTED:
            if env.campaign_id and (live := call_for(env)) is not None:
                await decide(live, live.gate.on_speech_started(change.speech_start_us, now_us()))
            return
        if change.kind not in CALL_EVENTS or not env.campaign_id:
            return  # an inbound call not yet routed to a campaign belongs to the IVR
        call = call_for(env, change.contact, change.sample_rate)
        if call is None:
            return
        campaign = book.get(env.campaign_id)
        if change.kind != CallLifecycle.ENDED:
            await act(call, campaign, react(call.state, campaign, change), env)
            return
        if change.answered:
            call.state.answered = True
        call.stop_waiting()  # a phrase held when the customer hung up needs no answer
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
        uid = said.utterance_id or env.event_id
        decision = call.gate.on_transcript(uid, said.text, said.speech_start_us, said.speech_end_us, now_us())
        if decision is not None:  # None: a replayed utterance
            call.cause = env
        await decide(call, decision)

    async def decide(call: Call, decision: turns.Decision) -> None:
        """A finished turn goes to the policy; a held phrase waits for its deadline or the next event."""
        if isinstance(decision, turns.Hold):
            wait_ms = (decision.until_us - now_us()) // 1000
            log.info("turn held", reason=decision.reason, wait_ms=wait_ms)
            call.wake_at(decision.until_us, lambda: decide(call, call.gate.on_timer(now_us())))
        elif isinstance(decision, turns.Turn) and call.cause is not None:
            call.stop_waiting()
            log.info("turn", parts=decision.parts, reason=decision.reason)
            campaign = book.get(call.cause.campaign_id)
            actions = policy.on_transcript(
                call.state, campaign, decision.utterance_id, decision.text, settings.dialogue_max_reprompts
            )
            await act(call, campaign, actions, call.cause)

    @svc.on_drain
    async def answer_held_turns() -> None:
        """Stopping: a phrase still held is answered now rather than lost with the process."""
        for call in list(calls.values()):
            await decide(call, call.gate.flush())

    @svc.bus.on(topics.REPLIES, ApprovedReply, realtime=False)
    async def approved(event: Event[ApprovedReply]) -> None:
        call = calls.get(event.envelope.call_id)
        if call is not None:
            policy.on_bot_reply(call.state, event.payload.turn_id, event.payload.text)

    return svc


COMMANDS = {
    "hangup": CallCommand.HANGUP,
    "stop": CallCommand.STOP_PLAYBACK,
    "transfer": CallCommand.TRANSFER,
}
CALL_EVENTS = frozenset(
    {
        CallLifecycle.ANSWERED,
        CallLifecycle.ENDED,
        CallLifecycle.AMD_VERDICT,
        CallLifecycle.BEEP,
        CallLifecycle.BARGE_IN,
        CallLifecycle.TRANSFER_FAILED,
    }
)


def react(state: policy.CallState, campaign: Campaign, change: CallLifecycle) -> list[policy.Action]:
    """The policy's answer to what telephony saw on a live call."""
    kind = change.kind
    if kind == CallLifecycle.ANSWERED:
        detect = campaign.voicemail.detect and change.direction == CallLifecycle.OUTBOUND
        return (policy.on_answered_with_detection if detect else policy.on_answered)(state, campaign)
    if kind == CallLifecycle.AMD_VERDICT:
        return policy.on_amd(state, campaign, machine=change.amd == CallLifecycle.MACHINE)
    if kind == CallLifecycle.BEEP:
        return policy.on_beep(state, campaign)
    if kind == CallLifecycle.BARGE_IN:
        return policy.on_barge_in(state)
    return policy.on_transfer_failed(state, campaign)


def _kb_ref(campaign: Campaign, settings: Settings) -> str:
    """The FAQ file relative to the campaigns folder (the llm service resolves it the same way)."""
    try:
        return str(campaign.knowledge_base.relative_to(settings.campaigns_dir.resolve()))
    except ValueError:
        return str(campaign.knowledge_base)
