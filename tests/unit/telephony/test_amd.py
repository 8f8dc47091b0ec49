"""Answering-machine detection rules fed synthetic speech decisions, tones and texts (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.telephony.amd import (
    AmdConfig,
    AmdDetector,
    Answer,
    Beep,
    BeepDetector,
    Verdict,
    combine,
    transcript_cue,
)

RATE = 16000
CHUNK = 512
CHUNK_US = CHUNK * 1_000_000 // RATE  # 32 ms
QUIET = b"\x00\x00" * CHUNK


def sine(hz: float | tuple[float, ...], ms: float, dbfs: float = -12.0) -> np.ndarray:
    t = np.arange(int(RATE * ms / 1000)) / RATE
    freqs = hz if isinstance(hz, tuple) else (hz,)
    amp = 32767 * 10 ** (dbfs / 20) / len(freqs)
    return sum(amp * np.sin(2 * math.pi * f * t) for f in freqs)  # type: ignore[return-value]


def noise(ms: float, dbfs: float = -50.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(RATE * ms / 1000)) * 32767 * 10 ** (dbfs / 20)


def pcm(x: np.ndarray) -> bytes:
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def feed(det: AmdDetector, pattern: list[tuple[bool, int]], t0: int = 0) -> tuple[list[Verdict], int]:
    """pattern: (is_speech, ms) runs of quiet 32 ms chunks; returns the verdicts and the end time."""
    out, t = [], t0
    for speech, ms in pattern:
        for _ in range(round(ms * 1000 / CHUNK_US)):
            t += CHUNK_US
            if (v := det.push(QUIET, speech, t)) is not None:
                out.append(v)
    return out, t


def feed_audio(det: AmdDetector, x: np.ndarray, t0: int, speech: bool = False) -> tuple[list[Verdict], int]:
    out, t = [], t0
    data = pcm(x)
    for i in range(0, len(data) - CHUNK * 2 + 1, CHUNK * 2):
        t += CHUNK_US
        if (v := det.push(data[i : i + CHUNK * 2], speech, t)) is not None:
            out.append(v)
    return out, t


# ---- acoustic rules -------------------------------------------------------------------------------


def test_hello_then_waiting_is_a_human_decided_after_the_pause() -> None:
    det = AmdDetector(AmdConfig(after_greeting_silence_ms=640), answered_us=0)
    verdicts, _ = feed(det, [(False, 416), (True, 480), (False, 608)])
    assert verdicts == []  # one chunk short of the pause a person leaves
    verdicts, t = feed(det, [(False, 32)], t0=1_504_000)
    assert [(v.answer, v.reason, v.decided_at_us) for v in verdicts] == [
        (Answer.HUMAN, "short greeting", 416_000 + 480_000 + 640_000)
    ]
    assert feed(det, [(True, 3000)], t0=t)[0] == []  # decided once; later talk is conversation


def test_talking_on_is_a_machine_decided_while_it_still_talks() -> None:
    det = AmdDetector(AmdConfig(long_greeting_ms=2000), answered_us=0)
    verdicts, _ = feed(det, [(False, 320), (True, 5000)])
    assert len(verdicts) == 1
    v = verdicts[0]
    assert (v.answer, v.reason) == (Answer.MACHINE, "long greeting")
    assert v.decided_at_us == 320_000 + 2_016_000  # the first 32 ms chunk past 2 s of speech


def test_pauses_shorter_than_a_persons_wait_do_not_end_the_greeting() -> None:
    det = AmdDetector(AmdConfig(after_greeting_silence_ms=640, long_greeting_ms=2000), answered_us=0)
    phrase = [(True, 512), (False, 352)]  # a recorded greeting's sentences, 0.35 s apart
    verdicts, _ = feed(det, [(False, 200), *phrase * 5])
    assert [(v.answer, v.reason) for v in verdicts] == [(Answer.MACHINE, "long greeting")]
    assert det.speech_ms >= 2000 and det.phrases == 4  # only speech counts, not the pauses


def test_many_short_phrases_without_a_pause_are_a_machine() -> None:
    det = AmdDetector(AmdConfig(max_phrases=5, long_greeting_ms=5000), answered_us=0)
    verdicts, _ = feed(det, [(False, 300), *[(True, 160), (False, 224)] * 6])
    assert [(v.answer, v.reason) for v in verdicts] == [(Answer.MACHINE, "many phrases")]
    assert det.speech_ms < 1000


def test_clicks_shorter_than_a_word_are_not_a_greeting() -> None:
    det = AmdDetector(AmdConfig(min_word_ms=96, initial_silence_ms=2500), answered_us=0)
    verdicts, _ = feed(det, [(False, 500), (True, 64), (False, 800), (True, 64), (False, 1200)])
    assert [(v.answer, v.reason) for v in verdicts] == [(Answer.UNCERTAIN, "no speech")]
    assert verdicts[0].decided_at_us == 2_528_000 and det.greeting_start_us is None


def test_a_click_in_the_pause_after_hello_does_not_delay_the_human_verdict() -> None:
    det = AmdDetector(AmdConfig(after_greeting_silence_ms=640), answered_us=0)
    verdicts, _ = feed(det, [(False, 320), (True, 448), (False, 320), (True, 64), (False, 320)])
    assert [(v.answer, v.decided_at_us) for v in verdicts] == [(Answer.HUMAN, 320_000 + 448_000 + 640_000)]


def test_speech_still_going_at_the_deadline_is_uncertain() -> None:
    det = AmdDetector(
        AmdConfig(initial_silence_ms=2500, deadline_ms=4000, long_greeting_ms=2000), answered_us=0
    )
    verdicts, _ = feed(det, [(False, 2400), (True, 2000)])
    assert [(v.answer, v.reason, v.decided_at_us) for v in verdicts] == [
        (Answer.UNCERTAIN, "deadline", 4_000_000)
    ]


def test_answer_time_defaults_to_the_first_chunk_and_times_are_the_callers() -> None:
    det = AmdDetector(AmdConfig(initial_silence_ms=1000))
    verdicts, _ = feed(det, [(False, 1200)], t0=7_000_000)
    assert det.answered_us == 7_000_000
    assert verdicts[0].decided_at_us == 8_024_000


def test_a_beep_is_a_machine_whatever_the_vad_says() -> None:
    det = AmdDetector(answered_us=0)
    verdicts, t = feed(det, [(False, 320), (True, 800), (False, 256)])
    assert verdicts == []
    verdicts, _ = feed_audio(det, sine(1000, 400), t0=t)
    assert [(v.answer, v.reason) for v in verdicts] == [(Answer.MACHINE, "beep")]
    assert "1000 Hz" in verdicts[0].detail
    assert verdicts[0].decided_at_us - t <= 200_000  # ~150 ms of tone, in 32 ms steps
    assert det.done


def test_a_beep_after_a_short_greeting_revises_human_to_machine_once() -> None:
    det = AmdDetector(AmdConfig(beep_revision_ms=10000), answered_us=0)
    first, t = feed(det, [(False, 300), (True, 900), (False, 800)])  # "Leave a message." ...
    assert [v.answer for v in first] == [Answer.HUMAN] and not det.done
    revised, t = feed_audio(det, sine(850, 400), t0=t)  # ... then its beep
    assert [(v.answer, v.reason) for v in revised] == [(Answer.MACHINE, "beep")]
    assert "after 'short greeting'" in revised[0].detail
    assert det.verdict == revised[0] and det.done
    assert feed_audio(det, sine(850, 400), t0=t)[0] == []


def test_no_revision_once_the_window_has_passed() -> None:
    det = AmdDetector(AmdConfig(beep_revision_ms=3000), answered_us=0)
    first, t = feed(det, [(False, 300), (True, 600), (False, 2200)])
    assert [v.answer for v in first] == [Answer.HUMAN] and det.done
    assert feed_audio(det, sine(1000, 500), t0=t)[0] == []
    assert det.verdict == first[0]


# ---- beep detector --------------------------------------------------------------------------------


def beeps_in(x: np.ndarray, frame: int = CHUNK) -> list[Beep]:
    det, out, data = BeepDetector(), [], pcm(x)
    for i in range(0, len(data), frame * 2):
        part = data[i : i + frame * 2]
        if (b := det.push(part, (i + len(part)) // 2 * 1_000_000 // RATE)) is not None:
            out.append(b)
    return out


@pytest.mark.parametrize("hz", [350, 440, 850, 1000, 1400, 2000])
@pytest.mark.parametrize("dbfs", [-12, -35])
def test_a_record_tone_is_found_with_its_frequency_and_times(hz: int, dbfs: int) -> None:
    x = np.concatenate([noise(500), sine(hz, 400, dbfs) + noise(400, seed=1), noise(600, seed=2)])
    (beep,) = beeps_in(x)
    assert abs(beep.hz - hz) <= 10
    assert abs(beep.start_us - 500_000) <= 40_000 and abs(beep.end_us - 900_000) <= 40_000


def test_the_beep_is_reported_when_it_stops_and_its_length_is_known_while_it_sounds() -> None:
    det = BeepDetector()
    tone = pcm(sine(1000, 2000))
    assert det.push(tone, 2_000_000) is None
    assert det.tone_ms >= 1900 and abs(det.tone_hz - 1000) < 10
    beep = det.push(pcm(noise(100)), 2_100_000)
    assert beep is not None and beep.ms >= 1900 and det.tone_ms == 0


def test_frame_size_does_not_change_what_is_found() -> None:
    x = np.concatenate([noise(300), sine(1000, 300), noise(500, seed=3)])
    assert beeps_in(x, frame=320) == beeps_in(x, frame=512) == beeps_in(x, frame=4000)


@pytest.mark.parametrize(
    "name,x",
    [
        ("a click of tone", sine(1000, 100)),
        ("below the band (mains hum)", sine(200, 500)),
        ("above the band (fax answer tone)", sine(2100, 500)),
        ("DTMF digit 1", sine((697, 1209), 400)),
        ("too quiet to be more than line noise", sine(1000, 500, dbfs=-50)),
        ("loud white noise", noise(1000, dbfs=-15)),
        ("a gliding tone", np.sin(2 * math.pi * np.cumsum(np.linspace(600, 1200, 8000)) / RATE) * 8000),
    ],
)
def test_what_is_not_a_beep(name: str, x: np.ndarray) -> None:
    assert beeps_in(np.concatenate([noise(200), x, noise(500, seed=4)])) == [], name


def test_a_voiced_vowel_is_not_a_beep() -> None:
    """Harmonics of a 120-180 Hz voice with vibrato spread the energy; a beep holds it in one sine."""
    t = np.arange(RATE) / RATE
    f0 = 150 + 30 * np.sin(2 * math.pi * 5 * t)
    phase = 2 * math.pi * np.cumsum(f0) / RATE
    formants = {1: 0.6, 2: 0.9, 3: 1.0, 4: 0.7, 5: 0.5, 6: 0.35, 8: 0.25, 12: 0.15, 16: 0.1}
    vowel = sum(a * np.sin(k * phase) for k, a in formants.items()) * 5000
    assert beeps_in(vowel) == []


# ---- words ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Hi, you've reached John. Please leave a message after the tone.",
        "Leave me a message.",
        "Please leave your name and number.",
        "Leave my message.",  # how tiny.en hears "Leave a message."
        "You have reached the voice mail of Doctor Patel.",
        "Mailbox full.",
        "I can't come to the phone right now.",
        "We are unable to take your call.",
        "The number you have dialed is not available.",
        "At the tone, please record your message.",
        "Sorry I missed your call.",
        "We’re closed. We’ll call you back as soon as possible.",  # two hints (curly apostrophes)
    ],
)
def test_voicemail_words_are_a_machine(text: str) -> None:
    cue = transcript_cue(text, at_us=3_000_000)
    assert cue is not None and cue.answer is Answer.MACHINE and cue.reason == "transcript", text
    assert cue.decided_at_us == 3_000_000


@pytest.mark.parametrize(
    "text",
    [
        "Hello, this is Maria speaking, who's calling please?",
        "Hello, this is Maria speaking, whose calling please.",  # tiny.en's spelling
        "Good afternoon, Johnson and Partners, how may I help you?",
        "Hello? Sorry, she's not available right now, who's calling?",  # one hint, then a question
        "Hi, you've got Dan, what can I do for you?",
        "Who is this?",
    ],
)
def test_a_question_to_the_caller_is_a_human(text: str) -> None:
    cue = transcript_cue(text)
    assert cue is not None and cue.answer is Answer.HUMAN, text


@pytest.mark.parametrize(
    "text", ["Hello?", "Hello, Smith residence.", "", "He's not available.", "Yes, speaking."]
)
def test_words_that_do_not_tell(text: str) -> None:
    assert transcript_cue(text) is None


def test_a_voicemail_phrase_wins_over_a_question() -> None:
    cue = transcript_cue("Hi, who's calling? Just kidding, this is voicemail, leave a message.")
    assert cue is not None and cue.answer is Answer.MACHINE


def test_combine_words_over_timing_and_a_beep_over_words() -> None:
    human = Verdict(Answer.HUMAN, "short greeting", 1_800_000)
    long_greeting = Verdict(Answer.MACHINE, "long greeting", 2_600_000)
    beep = Verdict(Answer.MACHINE, "beep", 2_200_000)
    says_machine = Verdict(Answer.MACHINE, "transcript", 2_400_000, "'leave a message'")
    says_human = Verdict(Answer.HUMAN, "transcript", 4_000_000, "'who's calling'")
    assert combine(human, None) is human
    assert combine(human, says_machine) is says_machine
    assert combine(long_greeting, says_human) is says_human
    assert combine(long_greeting, says_machine) is long_greeting  # agreeing: the earlier decision
    assert combine(beep, says_human) is beep
    assert combine(Verdict(Answer.UNCERTAIN, "deadline", 4_000_000), says_human) is says_human
