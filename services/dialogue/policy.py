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

# Not a campaign line yet (Lines has no `handoff`): the bot cannot transfer, so it promises a call back.
HANDOFF_LINE = "Of course. I will ask one of my colleagues to call you back."


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


Action = Say | AskLlm | Finish


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


def _finish(state: CallState, disposition: str, opt_out: bool = False) -> list[Action]:
    if state.finished:
        return []
    state.finished = True
    slots = (("handoff", "requested"),) if state.handoff else ()
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
    lines = campaign.lines
    return [_say(state, campaign, lines.greeting, lines.pitch, lines.invite_questions)]


def on_transcript(
    state: CallState, campaign: Campaign, utterance_id: str, text: str, max_reprompts: int
) -> list[Action]:
    """React to one customer utterance; a replayed utterance_id or speech after goodbye does nothing."""
    if utterance_id in state.seen_utterances or state.ending or state.finished:
        return []
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
        state.ending = True
        return [
            _say(state, campaign, HANDOFF_LINE, lines.goodbye, end_call=True),
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
    return _finish(state, _disposition(state))
