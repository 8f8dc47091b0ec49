"""The end-pointing state machine, fed synthetic speech/silence decisions (no model)."""

from __future__ import annotations

from voicebot.vad import Endpointer, Utterance

CHUNK_MS = 32
CHUNK = b"\x01\x00" * 512  # 32 ms at 16 kHz


def feed(ep: Endpointer, pattern: list[tuple[bool, int]], t0: int = 1_000_000) -> tuple[list[Utterance], int]:
    """pattern: (is_speech, milliseconds) runs; returns utterances and the end time fed."""
    out: list[Utterance] = []
    t = t0
    for speech, ms in pattern:
        for _ in range(ms // CHUNK_MS):
            t += CHUNK_MS * 1000
            out.extend(ep.push(CHUNK, speech, t))
    return out, t


def seconds(u: Utterance) -> float:
    return len(u.pcm) / 2 / 16000


def test_short_noise_is_not_speech() -> None:
    ep = Endpointer(min_speech_ms=200, silence_stop_ms=400)
    out, _ = feed(ep, [(False, 640), (True, 96), (False, 1280), (True, 128), (False, 1280)])
    assert out == []
    assert not ep.in_speech


def test_utterance_ends_after_silence_stop_with_pre_roll_and_tail() -> None:
    ep = Endpointer(min_speech_ms=192, silence_stop_ms=384, pre_roll_ms=192, tail_ms=96)
    out, _ = feed(ep, [(False, 640), (True, 960)], t0=0)
    assert out == [] and ep.in_speech
    speech_end = 640_000 + 960_000
    out, _ = feed(ep, [(False, 352)], t0=speech_end)  # one chunk short of the stop
    assert out == []
    out, _ = feed(ep, [(False, 32)], t0=speech_end + 352_000)
    assert len(out) == 1
    utt = out[0]
    assert utt.last_part and utt.part == 0
    assert utt.speech_start_us == 640_000
    assert utt.speech_end_us == speech_end
    # 192 ms pre-roll + 960 ms speech + 96 ms tail
    assert abs(seconds(utt) - (0.192 + 0.960 + 0.096)) < 1e-6
    assert not ep.in_speech


def test_inner_pause_shorter_than_stop_keeps_one_utterance() -> None:
    ep = Endpointer(min_speech_ms=192, silence_stop_ms=416)
    out, _ = feed(ep, [(True, 640), (False, 320), (True, 640), (False, 640)])
    assert len(out) == 1
    assert seconds(out[0]) > 1.5


def test_brief_dip_inside_the_start_run_is_tolerated() -> None:
    ep = Endpointer(min_speech_ms=192, silence_stop_ms=416, gap_ms=64)
    out, _ = feed(ep, [(True, 128), (False, 32), (True, 96), (False, 640)])
    assert len(out) == 1


def test_long_speech_is_split_into_parts() -> None:
    ep = Endpointer(min_speech_ms=192, silence_stop_ms=416, max_utterance_s=2.0)
    out, _ = feed(ep, [(True, 5120), (False, 640)])
    assert [u.part for u in out] == [0, 1, 2]
    assert [u.last_part for u in out] == [False, False, True]
    assert all(seconds(u) <= 2.0 + 0.2 for u in out)
    # parts are contiguous: each starts where the previous one's audio ended
    assert out[1].speech_start_us == out[0].speech_end_us
    assert abs(sum(seconds(u) for u in out) - 5.12 - 0.1) < 0.3


def test_flush_ends_speech_in_progress_only() -> None:
    ep = Endpointer()
    feed(ep, [(False, 640)])
    assert ep.flush() == []
    out, _ = feed(ep, [(True, 640)])
    assert out == []
    flushed = ep.flush()
    assert len(flushed) == 1 and flushed[0].last_part
    assert ep.flush() == []


def test_next_utterance_starts_fresh() -> None:
    ep = Endpointer(min_speech_ms=192, silence_stop_ms=384)
    out, _ = feed(ep, [(True, 640), (False, 640), (True, 320), (False, 640)])
    assert [u.part for u in out] == [0, 0]
    assert out[1].speech_start_us > out[0].speech_end_us
