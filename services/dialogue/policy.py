"""The dialogue policy: a pure state machine from call events to what the bot does next.

`on_answered`, `on_transcript` and `on_ended` take the call's state and return actions (`Say`, `AskLlm`,
`Finish`); the app turns them into events. Every transition is idempotent per utterance, so a replayed
transcript never makes the bot speak twice, and nothing is said after the bot decided to hang up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.dialogue.intents import Intent, classify
from voicebot.campaigns import Campaign


@dataclass(frozen=True, slots=True)
class Say:
    """Sentences to speak as one reply; `end_call` hangs up after the last one."""

    sentences: tuple[str, ...]
    end_call: bool = False


@dataclass(frozen=True, slots=True)
class AskLlm:
    question: str
    history: tuple[tuple[str, str], ...]
    follow_up: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The call's business outcome (published once per call)."""

    disposition: str
    opt_out: bool = False
    slots: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    """A call-control order for the call's media worker: "hangup", "stop" (playback), or "transfer"."""

    kind: str
    target: str = ""
    mode: str = ""
    summary: str = ""


Action = Say | AskLlm | Finish | Command


@dataclass(slots=True)
class CallState:
    call_id: str
    profile: dict[str, str] = field(default_factory=dict)
    answered: bool = False
    ending: bool = False  # the bot said goodbye; ignore further customer speech
    finished: bool = False  # the outcome was published
    interested: bool = False
    questions: int = 0
    turns: int = 0
    reprompts: int = 0
    pitched_again: bool = False
    handoff: bool = False
    transferring: bool = False  # handed to a human: the bot stays quiet unless the transfer fails
    awaiting_amd: bool = False  # answered; greeting held until voicemail detection says who answered
    awaiting_beep: bool = False  # a machine answered: the message is left after its beep
    interruptions: int = 0  # replies the customer talked over
    history: list[tuple[str, str]] = field(default_factory=list)
    seen_utterances: set[str] = field(default_factory=set)
    llm_turns: set[str] = field(default_factory=set)  # turn ids of answers we asked the LLM for
    last_history_turn: str = ""


def sentences(text: str) -> tuple[str, ...]:
    """Split a line into sentences, one TTS chunk each (the first audio starts sooner)."""
    return tuple(s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip())


def _say(state: CallState, campaign: Campaign, *lines: str, end_call: bool = False) -> Say:
    text = " ".join(campaign.say(line, state.profile) for line in lines)
    state.history.append(("bot", text))
    return Say(sentences(text), end_call=end_call)


def _disposition(state: CallState) -> str:
    if not state.answered:
        return "no_answer"
    return "interested" if state.interested or state.questions else "completed"


def _finish(
    state: CallState, disposition: str, opt_out: bool = False, slots: tuple[tuple[str, str], ...] = ()
) -> list[Action]:
    if state.finished:
        return []
    state.finished = True
    if state.handoff and not slots:
        slots = (("handoff", "requested"),)
    return [Finish(disposition, opt_out, slots)]


def _goodbye(
    state: CallState, campaign: Campaign, line: str, disposition: str, opt_out: bool = False
) -> list[Action]:
    state.ending = True
    return [_say(state, campaign, line, end_call=True), *_finish(state, disposition, opt_out)]


def on_answered(state: CallState, campaign: Campaign) -> list[Action]:
    """Greeting, pitch and the invitation to ask, once per call."""
    if state.answered or state.ending:
        return []
    state.answered = True
    return [_opening(state, campaign)]


def _opening(state: CallState, campaign: Campaign) -> Say:
    """Recording notice (when the campaign records and says so), greeting, pitch, invitation."""
    lines = campaign.lines
    notice = (
        [campaign.recording.announce] if campaign.recording.enabled and campaign.recording.announce else []
    )
    return _say(state, campaign, *notice, lines.greeting, lines.pitch, lines.invite_questions)


def on_transcript(
    state: CallState, campaign: Campaign, utterance_id: str, text: str, max_reprompts: int
) -> list[Action]:
    """React to one customer utterance; a replayed utterance_id or speech after goodbye does nothing."""
    if utterance_id in state.seen_utterances or state.ending or state.finished:
        return []
    if state.awaiting_amd or state.awaiting_beep:
        return []  # the answering party's greeting, not a turn: the verdict (or the beep) decides
    state.seen_utterances.add(utterance_id)
    state.answered = True
    state.turns += 1
    if text.strip():
        state.history.append(("customer", text.strip()))
    intent = classify(text)
    lines = campaign.lines
    if intent is Intent.OPT_OUT:
        return _goodbye(state, campaign, lines.goodbye_opt_out, "opted_out", opt_out=True)
    if intent is Intent.NOT_INTERESTED:
        return _goodbye(state, campaign, lines.goodbye_not_interested, "not_interested")
    if intent is Intent.WANTS_HUMAN:
        state.handoff = True
        if campaign.transfer.agent_uri and not state.transferring:
            state.transferring = True
            state.ending = True
            transfer = campaign.transfer
            return [
                _say(state, campaign, lines.transfer),
                Command("transfer", transfer.agent_uri, transfer.mode, handoff_summary(state)),
            ]
        state.ending = True
        return [
            _say(state, campaign, lines.handoff_callback, lines.goodbye, end_call=True),
            *_finish(state, "interested" if state.interested or state.questions else "callback"),
        ]
    if intent is Intent.GOODBYE:
        return _goodbye(state, campaign, lines.goodbye, _disposition(state))
    if state.turns >= campaign.limits.max_turns:
        return _goodbye(state, campaign, lines.goodbye, _disposition(state))
    if intent is Intent.QUESTION:
        state.questions += 1
        state.interested = True
        state.reprompts = 0
        history = tuple(state.history[:-1])
        return [AskLlm(text.strip(), history, campaign.say(lines.anything_else, state.profile))]
    if intent is Intent.INTERESTED:
        state.interested = True
        state.reprompts = 0
        if state.pitched_again:
            return [_say(state, campaign, lines.invite_questions)]
        state.pitched_again = True
        return [_say(state, campaign, lines.pitch, lines.invite_questions)]
    state.reprompts += 1
    if state.reprompts > max_reprompts:
        return _goodbye(state, campaign, lines.goodbye, _disposition(state))
    return [_say(state, campaign, lines.not_understood)]


def on_bot_reply(state: CallState, turn_id: str, text: str) -> None:
    """An approved LLM answer joins the history the next LLM request sees (one entry per turn)."""
    if turn_id not in state.llm_turns or not text.strip():
        return
    if state.last_history_turn == turn_id and state.history and state.history[-1][0] == "bot":
        state.history[-1] = ("bot", f"{state.history[-1][1]} {text.strip()}")
    else:
        state.history.append(("bot", text.strip()))
    state.last_history_turn = turn_id


def on_ended(state: CallState) -> list[Action]:
    """The final outcome, unless one was published already."""
    state.ending = True
    if state.transferring:
        return _finish(state, "transferred")
    return _finish(state, _disposition(state))


def handoff_summary(state: CallState, max_chars: int = 300) -> str:
    """What the agent is told before the bridge: who, and the customer's last words."""
    said = [text for role, text in state.history if role == "customer"]
    name = state.profile.get("name", "").strip()
    head = f"Customer {name}. " if name else "Customer. "
    tail = " / ".join(said[-3:])
    return (head + (f"Said: {tail}" if tail else "Asked for a person."))[:max_chars]


def on_answered_with_detection(state: CallState, campaign: Campaign) -> list[Action]:
    """Outbound with voicemail detection: the greeting waits for the verdict (`on_amd`)."""
    if state.answered or state.ending:
        return []
    state.answered = True
    state.awaiting_amd = True
    return []


def on_amd(state: CallState, campaign: Campaign, machine: bool) -> list[Action]:
    """A human (or no clear answer) hears the greeting; a machine is hung up on or gets a message.

    A revised verdict (a beep after a short "Leave a message." that sounded like "Hello?") stops the
    greeting the machine is recording."""
    if state.ending or state.awaiting_beep:
        return []
    if not state.awaiting_amd:
        return _machine(state, campaign, [Command("stop")]) if machine and state.answered else []
    state.awaiting_amd = False
    if not machine:
        return [_opening(state, campaign)]
    return _machine(state, campaign, [])


def _machine(state: CallState, campaign: Campaign, first: list[Action]) -> list[Action]:
    if campaign.voicemail.on_machine == "leave_message" and campaign.voicemail.message:
        state.awaiting_beep = True
        return first
    state.ending = True
    return [Command("hangup"), *_finish(state, "voicemail")]


def on_beep(state: CallState, campaign: Campaign) -> list[Action]:
    """The machine is recording: leave the campaign's message once, then hang up."""
    if not state.awaiting_beep or state.ending:
        return []
    state.awaiting_beep = False
    state.ending = True
    message = _say(state, campaign, campaign.voicemail.message, end_call=True)
    return [message, *_finish(state, "voicemail_left")]


def on_barge_in(state: CallState) -> list[Action]:
    """The customer talked over a reply. A cut goodbye still ends the call (its hang-up was in the audio)."""
    state.interruptions += 1
    if state.ending and not state.transferring:
        return [Command("hangup")]
    return []


def on_transfer_failed(state: CallState, campaign: Campaign) -> list[Action]:
    """No agent took the call: say so, promise a call back, and end politely."""
    if not state.transferring:
        return []
    state.transferring = False
    lines = campaign.lines
    return [
        _say(state, campaign, lines.transfer_failed, lines.goodbye, end_call=True),
        *_finish(state, "callback", slots=(("handoff", "no_agent"),)),
    ]
