"""ASR rules without a model: joining utterance parts, confidence mapping, text clean-up."""

from __future__ import annotations

import math

import pytest

from services.asr.utterances import PartAssembler, clean_text, confidence
from voicebot.events import AudioUtterance


def _part(uid: str, n: int, last: bool, pcm: bytes, start: int = 0, end: int = 0) -> AudioUtterance:
    return AudioUtterance(
        utterance_id=uid,
        part=n,
        last_part=last,
        pcm=pcm,
        sample_rate=16000,
        speech_start_us=start,
        speech_end_us=end,
    )


def test_single_part_passes_straight_through() -> None:
    speech = PartAssembler().add(_part("u1", 0, True, b"ab", 10, 20))
    assert speech is not None
    assert (speech.pcm, speech.sample_rate, speech.speech_start_us, speech.speech_end_us) == (
        b"ab",
        16000,
        10,
        20,
    )


def test_parts_are_joined_in_order_with_first_start_and_last_end() -> None:
    asm = PartAssembler()
    assert asm.add(_part("u1", 0, False, b"aa", 100, 200)) is None
    assert asm.add(_part("u1", 1, False, b"bb", 200, 300)) is None
    assert asm.add(_part("u1", 1, False, b"bb", 200, 300)) is None  # a replayed part is kept once
    speech = asm.add(_part("u1", 2, True, b"cc", 300, 400))
    assert speech is not None
    assert speech.pcm == b"aabbcc"
    assert (speech.speech_start_us, speech.speech_end_us) == (100, 400)
    assert len(asm) == 0


def test_interleaved_utterances_stay_apart_and_memory_is_bounded() -> None:
    asm = PartAssembler(capacity=2)
    asm.add(_part("a", 0, False, b"a0"))
    asm.add(_part("b", 0, False, b"b0"))
    asm.add(_part("c", 0, False, b"c0"))  # evicts "a", the oldest open utterance
    assert len(asm) == 2
    speech = asm.add(_part("b", 1, True, b"b1"))
    assert speech is not None and speech.pcm == b"b0b1"
    lone = asm.add(_part("a", 1, True, b"a1"))
    assert lone is not None and lone.pcm == b"a1"


def test_mixed_sample_rates_are_refused() -> None:
    asm = PartAssembler()
    asm.add(_part("u", 0, False, b"aa"))
    odd = _part("u", 1, True, b"bb")
    odd.sample_rate = 8000
    with pytest.raises(ValueError, match="mixes sample rates"):
        asm.add(odd)


def test_confidence_is_token_weighted_exp_of_logprob() -> None:
    assert confidence([], []) == 0.0
    assert confidence([0.0], [5]) == 1.0
    assert confidence([-0.2, -1.0], [9, 1]) == pytest.approx(math.exp(-0.28))
    assert 0.0 <= confidence([-50.0], [3]) < 1e-6


def test_clean_text_strips_and_joins_segments() -> None:
    assert clean_text([" What is the  annual fee?", "  Thanks. "]) == "What is the annual fee? Thanks."
    assert clean_text([]) == ""
    assert clean_text(["  "]) == ""
