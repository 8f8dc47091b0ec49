"""Barge-in decisions per 32 ms VAD chunk: pause at onset, cut on real speech, resume after a backchannel."""

from __future__ import annotations

from services.telephony.bargein import Act, BargeIn, Rule

CHUNK = 32.0


def feed(
    barge: BargeIn, pattern: str, playing: bool = True, start_us: int = 1_000_000
) -> list[tuple[int, Act]]:
    """`pattern`: one char per chunk, 's' speech, '.' silence; returns (chunk index, act) for each act."""
    acts = []
    for i, c in enumerate(pattern):
        act = barge.push(c == "s", CHUNK, start_us + int((i + 1) * CHUNK * 1000), playing)
        if act is not None:
            acts.append((i, act))
    return acts


def test_speech_over_the_bot_pauses_at_onset_then_cuts_after_min_speech() -> None:
    barge = BargeIn(Rule(min_speech_ms=320))
    acts = feed(barge, "...ssssssssssss")
    assert acts[0] == (3, Act.PAUSE)  # the first speech chunk: ~32 ms after onset
    assert acts[1] == (12, Act.CUT)  # 10 chunks = 320 ms of speech
    assert barge.onset_us == 1_000_000 + 3 * 32_000


def test_a_short_sound_pauses_then_resumes_and_its_utterance_is_not_a_turn() -> None:
    barge = BargeIn(Rule(min_speech_ms=700, resume_after_ms=256))
    acts = feed(barge, "..sssssssss........")  # 288 ms of "uh-huh", then silence
    assert [a for _, a in acts] == [Act.PAUSE, Act.RESUME]
    assert acts[1][0] == 2 + 9 + 7  # 8 silent chunks (256 ms) after the sound
    assert barge.is_backchannel(barge.onset_us, barge.onset_us + 288_000)
    assert not barge.is_backchannel(barge.onset_us, barge.resumed_at_us + 500_000)  # went on talking


def test_pauses_inside_real_speech_do_not_resume_it() -> None:
    barge = BargeIn(Rule(min_speech_ms=640, resume_after_ms=256))
    acts = feed(barge, "sssss....sssss....sssss")  # words with short gaps: 15 chunks = 480 ms < 640 ms
    assert [a for _, a in acts] == [Act.PAUSE]
    acts = feed(barge, "sssssss", start_us=2_000_000)
    assert [a for _, a in acts] == [Act.CUT]


def test_nothing_happens_when_the_bot_is_silent_or_barge_in_is_off() -> None:
    assert feed(BargeIn(Rule()), "ssssssssssssssssssssssss", playing=False) == []
    assert feed(BargeIn(Rule(enabled=False)), "ssssssssssssssssssssssss") == []


def test_min_speech_zero_cuts_at_once() -> None:
    assert [a for _, a in feed(BargeIn(Rule(min_speech_ms=0)), ".ss")] == [Act.CUT]


def test_words_with_breaths_between_them_add_up_to_an_interruption() -> None:
    """ "Wait, [300 ms] how much is it?": each stretch is shorter than min_speech_ms, together they cut."""
    barge = BargeIn(Rule(min_speech_ms=640, resume_after_ms=256, merge_gap_ms=1000))
    acts = feed(barge, "ssssssss" + "." * 9 + "ssssssssssssss")
    assert [a for _, a in acts] == [Act.PAUSE, Act.RESUME, Act.PAUSE, Act.CUT]
    assert barge.onset_us == 1_000_000  # the interruption began with "Wait"
    # the second pause answered the second stretch (its own onset), not "Wait" 0.5 s before it
    assert barge.run_onset_us == 1_000_000 + 17 * 32_000


def test_a_second_backchannel_long_after_the_first_starts_afresh() -> None:
    barge = BargeIn(Rule(min_speech_ms=640, resume_after_ms=256, merge_gap_ms=1000))
    acts = feed(barge, "ssssssssss" + "." * 50 + "ssssssssss" + "." * 9)  # two "uh-huh"s 1.6 s apart
    assert [a for _, a in acts] == [Act.PAUSE, Act.RESUME, Act.PAUSE, Act.RESUME]
