"""Policy transitions: greeting once, intents to actions, idempotent per utterance, outcomes once."""

from __future__ import annotations

import pytest

from services.dialogue.policy import (
    AskLlm,
    CallState,
    Finish,
    Say,
    on_answered,
    on_bot_reply,
    on_ended,
    on_transcript,
    sentences,
)
from voicebot.campaigns import Campaign, CampaignBook
from voicebot.config import REPO_ROOT


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return CampaignBook(REPO_ROOT / "campaigns").get("acme-card")


def answered(campaign: Campaign) -> CallState:
    state = CallState(call_id="c1", profile={"name": "Ada"})
    on_answered(state, campaign)
    return state


def said(actions: list) -> list[Say]:
    return [a for a in actions if isinstance(a, Say)]


def finished(actions: list) -> list[Finish]:
    return [a for a in actions if isinstance(a, Finish)]


def test_answer_greets_pitches_invites_once_with_name(campaign: Campaign) -> None:
    state = CallState(call_id="c1", profile={"name": "Ada"})
    actions = on_answered(state, campaign)
    assert len(actions) == 1 and isinstance(actions[0], Say)
    say = actions[0]
    assert say.sentences[0].startswith("Hello Ada, this is Alex")
    assert "Acme Bank" in say.sentences[0]
    assert say.sentences[-1] == "Do you have any questions about the card?"
    assert len(say.sentences) == 4 and not say.end_call
    assert on_answered(state, campaign) == []


def test_opt_out_says_goodbye_ends_and_reports_opt_out(campaign: Campaign) -> None:
    state = answered(campaign)
    actions = on_transcript(state, campaign, "u1", "please stop calling me", 2)
    (say,) = said(actions)
    assert say.end_call
    assert "removed your number" in " ".join(say.sentences)
    assert finished(actions) == [Finish("opted_out", opt_out=True)]
    assert on_transcript(state, campaign, "u2", "hello?", 2) == []  # nothing after goodbye
    assert on_ended(state) == []  # the outcome went out already


def test_not_interested(campaign: Campaign) -> None:
    state = answered(campaign)
    actions = on_transcript(state, campaign, "u1", "I'm not interested", 2)
    assert said(actions)[0].end_call
    assert finished(actions) == [Finish("not_interested")]


def test_question_asks_llm_with_history_and_follow_up(campaign: Campaign) -> None:
    state = answered(campaign)
    actions = on_transcript(state, campaign, "u1", "What is the interest rate?", 2)
    (ask,) = actions
    assert isinstance(ask, AskLlm)
    assert ask.question == "What is the interest rate?"
    assert ask.follow_up == "Is there anything else you would like to know?"
    assert ask.history[0][0] == "bot" and "Hello Ada" in ask.history[0][1]
    assert state.interested and state.questions == 1


def test_goodbye_after_question_is_interested(campaign: Campaign) -> None:
    state = answered(campaign)
    on_transcript(state, campaign, "u1", "Is there an annual fee?", 2)
    actions = on_transcript(state, campaign, "u2", "no that's all", 2)
    say = said(actions)[0]
    assert say.end_call and "Goodbye" in say.sentences[-1] and "Ada" in " ".join(say.sentences)
    assert finished(actions) == [Finish("interested")]


def test_goodbye_without_interest_is_completed(campaign: Campaign) -> None:
    state = answered(campaign)
    assert finished(on_transcript(state, campaign, "u1", "no thanks, bye", 2)) == [Finish("completed")]


def test_replayed_utterance_is_ignored(campaign: Campaign) -> None:
    state = answered(campaign)
    first = on_transcript(state, campaign, "u1", "what is the fee?", 2)
    assert first and on_transcript(state, campaign, "u1", "what is the fee?", 2) == []
    assert state.turns == 1 and state.questions == 1


def test_interested_pitches_then_only_invites(campaign: Campaign) -> None:
    state = answered(campaign)
    first = said(on_transcript(state, campaign, "u1", "yes sounds good", 2))[0]
    assert "two percent cash back" in first.sentences[0]
    second = said(on_transcript(state, campaign, "u2", "okay", 2))[0]
    assert second.sentences == ("Do you have any questions about the card?",)


def test_unknown_reprompts_then_goodbye(campaign: Campaign) -> None:
    state = answered(campaign)
    for i in range(2):
        (say,) = on_transcript(state, campaign, f"u{i}", "", 2)
        assert say.sentences == ("Sorry, I didn't catch that.", "Could you say it again?")
    actions = on_transcript(state, campaign, "u9", "hmm", 2)
    assert said(actions)[0].end_call
    assert finished(actions) == [Finish("completed")]


def test_max_turns_ends_the_call(campaign: Campaign) -> None:
    state = answered(campaign)
    limit = campaign.limits.max_turns
    for i in range(limit - 1):
        actions = on_transcript(state, campaign, f"u{i}", f"what about option {i}?", 2)
        assert isinstance(actions[0], AskLlm)
    actions = on_transcript(state, campaign, "last", "and what about fees?", 2)
    assert said(actions)[0].end_call and finished(actions) == [Finish("interested")]


def test_wants_human_promises_callback_when_no_agent_can_take_it(campaign: Campaign) -> None:
    no_agent = campaign.transfer.model_copy(update={"agent_uri": ""})
    campaign = campaign.model_copy(update={"transfer": no_agent})
    state = answered(campaign)
    actions = on_transcript(state, campaign, "u1", "can I talk to a real person", 2)
    assert said(actions)[0].end_call
    assert finished(actions) == [Finish("callback", slots=(("handoff", "requested"),))]


def test_ended_outcomes(campaign: Campaign) -> None:
    assert on_ended(CallState(call_id="x")) == [Finish("no_answer")]
    state = answered(campaign)
    assert on_ended(state) == [Finish("completed")]
    assert on_ended(state) == []
    state = answered(campaign)
    on_transcript(state, campaign, "u1", "how much is it?", 2)
    assert on_ended(state) == [Finish("interested")]


def test_llm_answer_joins_history_once_per_turn(campaign: Campaign) -> None:
    state = answered(campaign)
    on_transcript(state, campaign, "u1", "is there a fee?", 2)
    state.llm_turns.add("t1")
    on_bot_reply(state, "t1", "There is no annual fee.")
    on_bot_reply(state, "t1", "Is there anything else?")
    on_bot_reply(state, "other", "Scripted line.")
    assert state.history[-1] == ("bot", "There is no annual fee. Is there anything else?")
    ask = on_transcript(state, campaign, "u2", "and what about abroad?", 2)[0]
    assert ask.history[-1][0] == "bot"


def test_sentences() -> None:
    assert sentences("Hello Ada. We have an offer! Questions? ") == (
        "Hello Ada.",
        "We have an offer!",
        "Questions?",
    )
    assert sentences("") == ()
