"""Answering-machine detection on rendered greetings through real Silero VAD and faster-whisper tiny.en.

Accuracy thresholds were set after measuring (bench/amd_accuracy.py prints the full table): the errors
allowed are the corpus's `hard` cases, whose cause is written next to each in tests/data/amd_greetings.yaml.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from services.asr.recognizer import WhisperRecognizer
from services.telephony.amd import AmdConfig, Answer
from services.telephony.amd_eval import Report, evaluate, load_greetings

CORPUS = Path(__file__).resolve().parents[1] / "data" / "amd_greetings.yaml"


@pytest.fixture(scope="module")
def report() -> Report:
    recognizer = WhisperRecognizer(threads=2)
    return evaluate(
        load_greetings(CORPUS),
        AmdConfig(),
        transcribe=lambda pcm, rate: recognizer.transcribe(pcm, rate).text,
    )


def explain(report: Report, mode: str) -> str:
    return "\n" + "\n".join(report.rows(mode))


def test_the_corpus_has_both_classes_in_number() -> None:
    greetings = load_greetings(CORPUS)
    labels = [g.label for g in greetings]
    assert len(greetings) >= 40
    assert labels.count(Answer.HUMAN) >= 20 and labels.count(Answer.MACHINE) >= 20
    assert len({g.voice for g in greetings}) >= 8  # espeak voices and Piper


def test_acoustic_cues_never_hang_up_on_an_ordinary_person(report: Report) -> None:
    for mode in ("first", "acoustic"):
        wrongly_machine = report.humans_called_machine(mode)
        assert all(o.greeting.hard for o in wrongly_machine), explain(report, mode)
        assert len(wrongly_machine) <= 5, explain(report, mode)
    # machines taken for people: only the short greetings without a beep (words alone tell those)
    missed = [o for o in report.errors("acoustic") if o.greeting.label is Answer.MACHINE]
    assert all(o.greeting.hard and o.greeting.beep is None for o in missed), explain(report, "acoustic")
    assert report.accuracy("acoustic") >= 0.80, explain(report, "acoustic")
    assert len(report.decided("acoustic")) >= 0.9 * len(report.outcomes)


def test_a_beep_after_a_short_greeting_turns_it_into_a_machine(report: Report) -> None:
    revised = [o for o in report.outcomes if o.first.answer is not o.acoustic.answer]
    assert revised, explain(report, "first")
    assert all(o.acoustic.reason == "beep" and o.greeting.label is Answer.MACHINE for o in revised)


def test_people_are_decided_quickly(report: Report) -> None:
    """The bot must speak within ~2 s: a person is decided in well under a second after their last word."""
    after_words = report.seconds_after_words()
    assert len(after_words) >= 20
    assert max(after_words) <= 1.0, explain(report, "first")
    since_answer = report.seconds_to_verdict("first", Answer.HUMAN, Answer.HUMAN)
    assert statistics.median(since_answer) <= 2.0, explain(report, "first")


def test_every_beep_is_found_and_nothing_else_is_one(report: Report) -> None:
    for o in report.outcomes:
        tone = o.greeting.beep
        if tone is None:
            assert o.beeps == [], f"{o.greeting.id}: {o.beeps}"
            continue
        (beep,) = o.beeps
        assert abs(beep.hz - tone.hz) <= 15, o.greeting.id
        assert abs(beep.ms - tone.ms) <= 40, (o.greeting.id, beep)


def test_the_first_transcript_fixes_what_timing_cannot(report: Report) -> None:
    mode = "acoustic + transcript"
    assert all(o.transcript is not None for o in report.outcomes)
    assert report.accuracy(mode) >= 0.95, explain(report, mode)
    # h26 answers at length and asks nothing: neither timing nor words can tell it from a recording
    assert len(report.humans_called_machine(mode)) <= 1, explain(report, mode)
    assert len(report.decided(mode)) >= 0.95 * len(report.outcomes)
    assert report.accuracy(mode) > report.accuracy("acoustic")
