"""Turn timelines split into stages and bus hops the way the latency benchmark reports them."""

from __future__ import annotations

import pytest

from voicebot.events import Mark
from voicebot.timeline import segments, truncate_at_first_audio, voice_to_voice


def _marks(*pairs: tuple[str, int]) -> list[Mark]:
    return [Mark(stage=s, at_us=t) for s, t in pairs]


TURN = _marks(
    ("telephony.speech_end", 0),
    ("telephony.out", 400_000),
    ("asr.in", 402_000),
    ("asr.out", 900_000),
    ("dialogue.in", 903_000),
    ("dialogue.out", 904_000),
    ("compliance.in", 906_000),
    ("compliance.out", 906_500),
    ("tts.in", 908_000),
    ("tts.out", 1_100_000),
    ("telephony.in", 1_102_000),
    ("telephony.first_audio", 1_120_000),
    ("telephony.out", 1_121_000),
)


def test_segments_name_stages_and_hops() -> None:
    parts = {s.name: s for s in segments(truncate_at_first_audio(TURN))}
    assert parts["endpointing"].seconds == pytest.approx(0.4)
    assert parts["asr"].seconds == pytest.approx(0.498)
    assert parts["bus asr→dialogue"].kind == "bus"
    assert parts["bus asr→dialogue"].seconds == pytest.approx(0.003)
    assert parts["playout"].seconds == pytest.approx(0.018)
    assert "bus telephony→asr" in parts
    bus = sum(s.seconds for s in parts.values() if s.kind == "bus")
    assert bus == pytest.approx(0.002 + 0.003 + 0.002 + 0.0015 + 0.002)


def test_voice_to_voice_needs_both_ends() -> None:
    assert voice_to_voice(TURN) == pytest.approx(1.12)
    assert voice_to_voice(TURN[1:]) is None
