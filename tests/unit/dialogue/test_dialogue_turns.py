"""End of turn: how finished a transcript reads, and the gate's holds, joins, caps and replays."""

from __future__ import annotations

import pytest

from services.dialogue.turns import Completeness, Hold, Turn, TurnConfig, TurnGate, join, judge

MS = 1000  # microseconds
T0 = 1_700_000_000_000_000  # a wall-clock time, in microseconds

CONFIG = TurnConfig(hold_unsure_ms=1200, hold_incomplete_ms=1500, resume_wait_ms=8000, max_parts=3)


@pytest.mark.parametrize(
    "text",
    [
        "No thanks.",
        "Yes, please.",
        "Yes.",
        "What is the annual fee?",
        "I'd like to know about the annual fee.",
        "I don't know.",
        "I think so.",
        "Yes it is.",
        "Not really.",
        "I want to cancel.",
        "Do I have to pay?",
        "My name is John.",
        "If I cancel within a month, do I pay anything?",
        "I told them.",
        "Mm-hmm.",  # a backchannel is a whole answer, not a hesitation
        "Uh-huh",
    ],
)
def test_complete_phrases(text: str) -> None:
    assert judge(text).completeness is Completeness.COMPLETE


@pytest.mark.parametrize(
    "text",
    [
        "My card number is...",  # Whisper marks a phrase cut at a pause with "..."
        "Please send it to my,",
        "My card number is",  # a copula after a noun
        "So my question is.",
        "I want to.",  # a preposition
        "I missed the payment because",  # a conjunction
        "Is there a discount for the",  # an article
        "Um",
        "Uh, well.",
        "Well, um.",
        "I'd like to know.",  # a verb that needs its object
        "I wanted to ask.",
        "Can you tell me?",  # Whisper's "?" does not finish it
        "I was wondering.",
        "No way. I mean.",
        "Hold on.",
        "Let me think.",
        "And so",
        "And if I cancel within a month.",  # a condition without what follows from it
    ],
)
def test_unfinished_phrases(text: str) -> None:
    assert judge(text).completeness is Completeness.INCOMPLETE


@pytest.mark.parametrize(
    "text",
    ["", "the account", "Mornings.", "I'm interested in.", "You can call me Macat"],
)
def test_phrases_that_may_go_on(text: str) -> None:
    assert judge(text).completeness is Completeness.UNSURE


def test_the_verdict_says_why() -> None:
    assert judge("My card number is").reason == "ends on 'is'"
    assert judge("Because...").reason == "trailing punctuation"


def test_join_drops_whispers_pause_marks() -> None:
    assert (
        join(["I'd like to know...", "", "about the annual fee."]) == "I'd like to know about the annual fee."
    )
    assert join(["Yes.", "And the fee?"]) == "Yes. And the fee?"


def gate() -> TurnGate:
    return TurnGate(CONFIG)


def test_a_complete_phrase_is_a_turn_at_once() -> None:
    g = gate()
    decision = g.on_transcript("u1", "What is the annual fee?", T0, T0 + 900 * MS, T0 + 1500 * MS)
    assert isinstance(decision, Turn)
    assert (
        decision.text == "What is the annual fee?" and decision.utterance_id == "u1" and decision.parts == 1
    )
    assert not g.held and g.deadline_us is None


def test_an_unfinished_phrase_waits_its_hold_counted_from_the_end_of_speech() -> None:
    g = gate()
    end = T0 + 800 * MS
    decision = g.on_transcript("u1", "My card number is...", T0, end, end + 700 * MS)
    assert decision == Hold(end + 1500 * MS, "incomplete: trailing punctuation")
    assert g.on_timer(end + 1499 * MS) == Hold(end + 1500 * MS, "not yet")
    turn = g.on_timer(end + 1500 * MS)
    assert isinstance(turn, Turn) and turn.text == "My card number is..." and turn.reason == "hold expired"
    assert g.on_timer(end + 3000 * MS) is None


def test_an_unsure_phrase_waits_less_than_an_unfinished_one() -> None:
    g = gate()
    end = T0 + 800 * MS
    assert g.on_transcript("u1", "the account", T0, end, end + 500 * MS) == Hold(
        end + 1200 * MS, "unsure: no final punctuation"
    )


def test_a_transcript_later_than_its_hold_is_a_turn_at_once() -> None:
    """Slow ASR: the silence already lasted longer than the hold when the text arrives."""
    g = gate()
    decision = g.on_transcript("u1", "My card number is...", T0, T0 + 800 * MS, T0 + 2400 * MS)
    assert isinstance(decision, Turn) and decision.reason.startswith("incomplete")


def test_the_rest_of_the_phrase_is_joined_into_one_turn() -> None:
    g = gate()
    assert isinstance(g.on_transcript("u1", "I'd like to know...", T0, T0 + 900 * MS, T0 + 1300 * MS), Hold)
    turn = g.on_transcript("u2", "about the annual fee.", T0 + 1600 * MS, T0 + 2600 * MS, T0 + 3000 * MS)
    assert isinstance(turn, Turn)
    assert turn.text == "I'd like to know about the annual fee."
    assert turn.utterance_id == "u2" and turn.parts == 2 and turn.speech_end_us == T0 + 2600 * MS


def test_a_joined_phrase_that_still_reads_unfinished_is_held_again() -> None:
    g = gate()
    g.on_transcript("u1", "My card number is...", T0, T0 + 900 * MS, T0 + 1300 * MS)
    end2 = T0 + 2500 * MS
    assert g.on_transcript("u2", "no wait, I mean...", T0 + 1500 * MS, end2, end2 + 400 * MS) == Hold(
        end2 + 1500 * MS, "incomplete: trailing punctuation"
    )
    turn = g.on_transcript("u3", "the account number.", T0 + 3100 * MS, T0 + 4000 * MS, T0 + 4400 * MS)
    assert isinstance(turn, Turn) and turn.text == "My card number is no wait, I mean the account number."


def test_speech_that_resumes_keeps_a_phrase_held_until_its_transcript() -> None:
    g = gate()
    end = T0 + 900 * MS
    g.on_transcript("u1", "I'd like to know...", T0, end, end + 400 * MS)
    onset = end + 1300 * MS  # inside the hold: the customer goes on
    assert g.on_speech_started(onset, onset + 200 * MS) == Hold(onset + 8000 * MS, "speaking again")
    assert isinstance(g.on_timer(end + 1500 * MS), Hold)  # the old deadline no longer releases it
    turn = g.on_transcript("u2", "about the fee.", onset, onset + 1000 * MS, onset + 1500 * MS)
    assert isinstance(turn, Turn) and turn.parts == 2


def test_speech_heard_before_the_transcript_holds_even_a_complete_phrase() -> None:
    """The onset of the next utterance arrives while ASR still works on this one: the turn goes on."""
    g = gate()
    end = T0 + 500 * MS
    assert g.on_speech_started(end + 700 * MS, end + 900 * MS) is None  # nothing held yet
    assert g.on_transcript("u1", "Yes.", T0, end, end + 1000 * MS) == Hold(end + 8700 * MS, "speaking again")
    turn = g.on_transcript("u2", "And what is the fee?", end + 700 * MS, end + 2000 * MS, end + 2500 * MS)
    assert isinstance(turn, Turn) and turn.text == "Yes. And what is the fee?"


def test_the_onset_of_the_utterance_itself_does_not_hold_it() -> None:
    g = gate()
    assert g.on_speech_started(T0, T0 + 200 * MS) is None
    assert isinstance(g.on_transcript("u1", "No thanks.", T0, T0 + 700 * MS, T0 + 1200 * MS), Turn)


def test_resumed_speech_without_a_transcript_releases_after_the_resume_wait() -> None:
    g = gate()
    end = T0 + 900 * MS
    g.on_transcript("u1", "I'd like to know...", T0, end, end + 400 * MS)
    g.on_speech_started(end + 600 * MS, end + 800 * MS)
    assert isinstance(g.on_timer(end + 8599 * MS), Hold)
    turn = g.on_timer(end + 8600 * MS)
    assert isinstance(turn, Turn) and turn.text == "I'd like to know..."


def test_joined_parts_are_capped() -> None:
    g = gate()
    t = T0
    for n in range(2):
        assert isinstance(g.on_transcript(f"u{n}", "and um...", t, t + 500 * MS, t + 700 * MS), Hold)
        t += 1000 * MS
    turn = g.on_transcript("u2", "and um...", t, t + 500 * MS, t + 700 * MS)
    assert isinstance(turn, Turn) and turn.parts == 3 and turn.reason == "max parts"


def test_a_replayed_transcript_is_neither_joined_twice_nor_answered_twice() -> None:
    g = gate()
    g.on_transcript("u1", "I'd like to know...", T0, T0 + 900 * MS, T0 + 1300 * MS)
    assert g.on_transcript("u1", "I'd like to know...", T0, T0 + 900 * MS, T0 + 1400 * MS) is None
    turn = g.on_transcript("u2", "about the fee.", T0 + 1600 * MS, T0 + 2600 * MS, T0 + 3000 * MS)
    assert isinstance(turn, Turn) and turn.text == "I'd like to know about the fee."
    for uid in ("u1", "u2"):
        assert g.on_transcript(uid, "about the fee.", T0, T0 + 2600 * MS, T0 + 5000 * MS) is None
    assert not g.held


def test_without_the_semantic_check_every_transcript_is_a_turn() -> None:
    g = TurnGate(TurnConfig(semantic=False))
    assert g.on_speech_started(T0 + 2000 * MS, T0 + 2200 * MS) is None
    turn = g.on_transcript("u1", "My card number is...", T0, T0 + 900 * MS, T0 + 2500 * MS)
    assert isinstance(turn, Turn) and turn.reason == "fixed silence"


def test_a_transcript_without_timings_counts_its_hold_from_arrival() -> None:
    g = gate()
    arrival = T0 + 5000 * MS
    assert g.on_transcript("u1", "I want to.", 0, 0, arrival) == Hold(
        arrival + 1500 * MS, "incomplete: ends on 'to'"
    )


def test_flush_answers_what_is_held() -> None:
    g = gate()
    assert g.flush() is None
    g.on_transcript("u1", "I'd like to know...", T0, T0 + 900 * MS, T0 + 1300 * MS)
    turn = g.flush()
    assert isinstance(turn, Turn) and turn.reason == "flushed" and not g.held
