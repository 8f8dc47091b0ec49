"""Policy around call control: voicemail detection, barge-in, transfer to a human, recording notice."""

from __future__ import annotations

import pytest

from services.dialogue.policy import (
    CallState,
    Command,
    Finish,
    Say,
    on_amd,
    on_answered,
    on_answered_with_detection,
    on_barge_in,
    on_beep,
    on_ended,
    on_transcript,
    on_transfer_failed,
)
from voicebot.campaigns import Campaign, CampaignBook
from voicebot.config import REPO_ROOT


@pytest.fixture(scope="module")
def base() -> Campaign:
    return CampaignBook(REPO_ROOT / "campaigns").get("acme-card")


def variant(base: Campaign, **changes: dict) -> Campaign:
    return base.model_copy(update={k: getattr(base, k).model_copy(update=v) for k, v in changes.items()})


def kinds(actions: list) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_greeting_waits_for_the_verdict_and_a_human_gets_it(base: Campaign) -> None:
    state = CallState(call_id="c", profile={"name": "Ada"})
    assert on_answered_with_detection(state, base) == []
    assert on_transcript(state, base, "u1", "Hello?", 2) == []  # their "hello" is not a turn to answer
    actions = on_amd(state, base, machine=False)
    assert kinds(actions) == ["Say"] and actions[0].sentences[0].startswith("Hello Ada")
    assert on_amd(state, base, machine=False) == []  # once


def test_machine_is_hung_up_on_when_no_message_is_left(base: Campaign) -> None:
    campaign = variant(base, voicemail={"on_machine": "hangup"})
    state = CallState(call_id="c")
    on_answered_with_detection(state, campaign)
    actions = on_amd(state, campaign, machine=True)
    assert actions == [Command("hangup"), Finish("voicemail")]


def test_machine_gets_the_message_after_the_beep(base: Campaign) -> None:
    campaign = variant(
        base, voicemail={"on_machine": "leave_message", "message": "Hi {name}, call {company}."}
    )
    state = CallState(call_id="c", profile={"name": "Ada"})
    on_answered_with_detection(state, campaign)
    assert on_amd(state, campaign, machine=True) == []
    assert on_transcript(state, campaign, "u1", "leave a message after the tone", 2) == []  # not a turn
    actions = on_beep(state, campaign)
    assert actions[0] == Say(("Hi Ada, call Acme Bank.",), end_call=True)
    assert actions[1] == Finish("voicemail_left")
    assert on_beep(state, campaign) == []


def test_wants_a_human_is_transferred_when_the_campaign_has_an_agent(base: Campaign) -> None:
    campaign = variant(base, transfer={"agent_uri": "sip:queue@pbx.example", "mode": "warm"})
    state = CallState(call_id="c", profile={"name": "Ada"})
    on_answered(state, campaign)
    actions = on_transcript(state, campaign, "u1", "Can I talk to a real person please?", 2)
    assert kinds(actions) == ["Say", "Command"]
    command = actions[1]
    assert (command.kind, command.target, command.mode) == ("transfer", "sip:queue@pbx.example", "warm")
    assert "Ada" in command.summary and "real person" in command.summary
    assert on_transcript(state, campaign, "u2", "hello?", 2) == []  # the agent takes it from here
    assert on_ended(state) == [Finish("transferred", slots=(("handoff", "requested"),))]


def test_failed_transfer_apologises_and_promises_a_call_back(base: Campaign) -> None:
    campaign = variant(base, transfer={"agent_uri": "sip:queue@pbx.example"})
    state = CallState(call_id="c")
    on_answered(state, campaign)
    on_transcript(state, campaign, "u1", "I want to speak to an agent", 2)
    actions = on_transfer_failed(state, campaign)
    assert kinds(actions) == ["Say", "Finish"]
    assert actions[0].end_call and "no one is available" in " ".join(actions[0].sentences)
    assert actions[1] == Finish("callback", slots=(("handoff", "no_agent"),))
    assert on_transfer_failed(state, campaign) == []


def test_a_cut_goodbye_still_hangs_up(base: Campaign) -> None:
    state = CallState(call_id="c")
    on_answered(state, base)
    assert on_barge_in(state) == []  # talking over the pitch: the customer's words are the next turn
    on_transcript(state, base, "u1", "no thanks, not interested", 2)
    assert on_barge_in(state) == [Command("hangup")]
    assert state.interruptions == 2


def test_recorded_campaign_announces_it_first(base: Campaign) -> None:
    campaign = variant(base, recording={"enabled": True, "announce": "This call is recorded."})
    actions = on_answered(CallState(call_id="c"), campaign)
    assert actions[0].sentences[0] == "This call is recorded."
    assert on_answered(CallState(call_id="c"), base)[0].sentences[0].startswith("Hello")


def test_a_late_beep_stops_the_greeting_and_the_message_follows(base: Campaign) -> None:
    campaign = variant(base, voicemail={"on_machine": "leave_message", "message": "Please call us back."})
    state = CallState(call_id="c")
    on_answered_with_detection(state, campaign)
    assert kinds(on_amd(state, campaign, machine=False)) == ["Say"]  # "Leave a message." sounded human
    assert on_amd(state, campaign, machine=True) == [Command("stop")]  # then its beep
    assert on_amd(state, campaign, machine=True) == []
    assert kinds(on_beep(state, campaign)) == ["Say", "Finish"]


def test_a_late_beep_hangs_up_when_no_message_is_left(base: Campaign) -> None:
    campaign = variant(base, voicemail={"on_machine": "hangup"})
    state = CallState(call_id="c")
    on_answered_with_detection(state, campaign)
    on_amd(state, campaign, machine=False)
    assert on_amd(state, campaign, machine=True) == [Command("hangup"), Finish("voicemail")]
