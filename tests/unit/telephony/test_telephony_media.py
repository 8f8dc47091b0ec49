"""Media helpers against the real libraries: bulk frame copy (libstdc++ layout) and Silero on speech."""

from __future__ import annotations

import os

import numpy as np
import pjsua2 as pj
import pytest

from voicebot import sip, vad
from voicebot.simulator import speak


@pytest.mark.parametrize("size", [0, 1, 320, 640, 1920])
def test_bulk_frame_copy_equals_element_copy(size: int) -> None:
    data = os.urandom(size)
    frame = pj.MediaFrame()
    frame.buf = pj.ByteVector(data)
    assert sip.frame_bytes(frame.buf) == bytes(frame.buf) == data


def test_fill_frame_writes_in_place() -> None:
    frame = pj.MediaFrame()
    first, second = os.urandom(640), os.urandom(320)
    sip.fill_frame(frame, first)
    assert bytes(frame.buf) == first and frame.size == 640
    assert frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO
    sip.fill_frame(frame, second)
    assert bytes(frame.buf) == second and frame.size == 320


def test_sip_uri_parts() -> None:
    invite = "INVITE sip:+15550100001@127.0.0.1:5070;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n"
    assert sip.request_user(invite) == "+15550100001"
    assert sip.uri_user('"Ann" <sip:+15550100002@10.0.0.1>') == "+15550100002"
    assert sip.uri_user("<sip:bot@127.0.0.1:5080>") == "bot"
    assert sip.uri_user("garbage") == ""


def test_caller_id_becomes_the_from_uri_and_nothing_else_does() -> None:
    assert sip.caller_uri("+15550100000", "127.0.0.1", 5080) == "sip:+15550100000@127.0.0.1:5080"
    for bad in ("", "+1 555", "bot", "+15550100000>\r\nX-Evil: 1", "+1234567890123456"):
        assert sip.caller_uri(bad, "127.0.0.1", 5080) == ""
    assert sip.call_op(from_uri="sip:+15550100000@h").txOption.localUri == "sip:+15550100000@h"
    assert sip.call_op().txOption.isEmpty()


def test_model_is_found_without_importing_torch() -> None:
    assert vad.model_path().name == "silero_vad.onnx"


def _detect(pcm: bytes) -> list[vad.Utterance]:
    det = vad.UtteranceDetector(vad.Endpointer(min_speech_ms=200, silence_stop_ms=400))
    out: list[vad.Utterance] = []
    t = 0
    for frame in (pcm[i : i + sip.FRAME_BYTES] for i in range(0, len(pcm), sip.FRAME_BYTES)):
        t += 20_000
        out.extend(det.push(frame, t))
    return out + det.flush()


def test_silero_finds_espeak_speech_between_silences() -> None:
    speech = speak("What is the annual fee on this card?")
    silence = b"\x00\x00" * 16000
    utts = _detect(silence + speech + silence)
    assert len(utts) == 1
    utt = utts[0]
    speech_s = len(speech) / 32000
    assert abs(len(utt.pcm) / 32000 - speech_s) < 0.6
    assert 0.7e6 < utt.speech_start_us < 1.3e6  # speech begins after the first second
    assert abs(utt.speech_end_us - (1e6 + speech_s * 1e6)) < 0.5e6


def test_silero_ignores_silence_and_low_noise() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.normal(0, 60, 16000 * 3)).astype("<i2").tobytes()  # about -55 dBFS hiss
    assert _detect(b"\x00\x00" * 16000 * 2 + noise) == []


def test_silero_rejects_wrong_chunk_size() -> None:
    with pytest.raises(ValueError):
        vad.SileroVad().probability(np.zeros(320, dtype=np.float32))


def test_summary_headers_stay_one_printable_line_and_are_read_back() -> None:
    assert sip.header_value("Customer Ann.\r\nX-Evil: 1\tSaid: é hi") == "Customer Ann.  X-Evil: 1 Said:   hi"
    assert len(sip.header_value("x" * 900)) == 500
    msg = "INVITE sip:agent@pbx SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nX-Voicebot-Summary: Said: card\r\n\r\nv=0"
    assert sip.header(msg, "x-voicebot-summary") == "Said: card"
    assert sip.header(msg, "X-Other") == ""
    prm = sip.call_op(headers={"X-Voicebot-Call": "c-1"})
    assert [(h.hName, h.hValue) for h in prm.txOption.headers] == [("X-Voicebot-Call", "c-1")]


def test_one_silero_run_for_many_calls_gives_each_its_own_answer() -> None:
    """Batched VAD (one ONNX run per worker tick) keeps every stream's recurrent state apart."""
    speech = np.frombuffer(speak("Hello, is this about my card?"), dtype="<i2").astype(np.float32) / 32768
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 0.01, speech.size).astype(np.float32)
    streams = [speech, noise, speech[::-1].copy()]
    alone, batched = [vad.SileroVad() for _ in streams], [vad.SileroVad() for _ in streams]
    n = speech.size // vad.CHUNK
    for i in range(n):
        rows = np.stack([s[i * vad.CHUNK : (i + 1) * vad.CHUNK] for s in streams])
        got = vad.probabilities(batched, rows)
        want = [v.probability(row) for v, row in zip(alone, rows, strict=True)]
        assert np.allclose(got, want, atol=1e-4)


def test_detect_runs_many_calls_and_keeps_each_calls_utterances() -> None:
    speech = speak("What is the annual fee on this card?")
    silence = b"\x00\x00" * 16000
    talker, quiet = (vad.UtteranceDetector(vad.Endpointer()) for _ in range(2))
    audio = {talker: silence + speech + silence, quiet: silence * 5}
    got: list[tuple[vad.UtteranceDetector, vad.Utterance]] = []
    for i, t in enumerate(range(0, len(audio[talker]), sip.FRAME_BYTES)):
        frames = [(det, pcm[t : t + sip.FRAME_BYTES], (i + 1) * 20_000) for det, pcm in audio.items()]
        got += vad.detect([f for f in frames if f[1]])
    assert [det for det, _ in got] == [talker]
    assert got[0][1].pcm and got[0][1].last_part
    assert got[0][1].pcm in audio[talker]
