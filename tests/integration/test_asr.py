"""asr on the real broker with the shipped tiny.en model: espeak-ng speech in, a transcript out."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.asr.app import Settings, build
from tests.support import listening_bus, running
from voicebot import topics
from voicebot.audio import resample_pcm16
from voicebot.bus import Bus, Event
from voicebot.events import AudioUtterance, Envelope, Transcript
from voicebot.service import Service

SENTENCE = "What is the annual fee for this credit card"

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
async def asr(kafka_bootstrap: str) -> AsyncIterator[Service]:
    """The service in-process, model loaded once for the module."""
    svc = build(Settings(kafka_bootstrap=kafka_bootstrap, handler_retries=2))
    async with running(svc, 60):
        yield svc


@pytest.fixture(scope="module")
async def tester(kafka_bootstrap: str) -> AsyncIterator[Bus]:
    """Plays telephony (publishes utterances) and dialogue (collects transcripts in `tester.received`)."""
    async with listening_bus(kafka_bootstrap, topics.TRANSCRIPTS, Transcript) as bus:
        yield bus


def _espeak_16k(text: str, tmp: Path) -> bytes:
    path = tmp / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        return resample_pcm16(wav.readframes(wav.getnframes()), wav.getframerate(), 16000)


async def _transcript_of(queue: asyncio.Queue[Event[Transcript]], call_id: str) -> Event[Transcript]:
    async with asyncio.timeout(30):
        while True:
            event = await queue.get()
            if event.envelope.call_id == call_id:
                return event


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


async def test_espeak_sentence_is_transcribed(asr: Service, tester: Bus, tmp_path: Path) -> None:
    pcm = _espeak_16k(SENTENCE, tmp_path)
    call = Envelope(
        call_id=f"call-{uuid.uuid4().hex}", tenant_id="demo", campaign_id="acme-card", media_node="w1"
    )
    await tester.publish(
        topics.UTTERANCES,
        AudioUtterance(
            utterance_id="u-1",
            pcm=pcm,
            sample_rate=16000,
            speech_start_us=1_000,
            speech_end_us=2_000,
            part=0,
            last_part=True,
        ),
        cause=call,
    )
    event = await _transcript_of(tester.received, call.call_id)
    t = event.payload
    expected = _words(SENTENCE)
    assert len(expected & _words(t.text)) >= len(expected) - 2, t.text
    assert t.text == t.text.strip()
    assert 0.3 < t.confidence <= 1.0
    assert t.language == "en"
    assert (t.utterance_id, t.speech_start_us, t.speech_end_us) == ("u-1", 1_000, 2_000)
    assert 0 < t.processing_s < 10
    assert event.envelope.media_node == "w1"
    assert [m.stage for m in event.envelope.marks] == ["tester.out", "asr.in", "asr.out", "tester.in"]


async def test_split_utterance_at_8khz_and_silence_both_answer(
    asr: Service, tester: Bus, tmp_path: Path
) -> None:
    pcm8k = resample_pcm16(_espeak_16k(SENTENCE, tmp_path), 16000, 8000)
    half = len(pcm8k) // 4 * 2
    call = Envelope(call_id=f"call-{uuid.uuid4().hex}", tenant_id="demo", campaign_id="acme-card")
    for n, chunk in enumerate((pcm8k[:half], pcm8k[half:])):
        await tester.publish(
            topics.UTTERANCES,
            AudioUtterance(utterance_id="u-2", pcm=chunk, sample_rate=8000, part=n, last_part=n == 1),
            cause=call,
        )
    t = (await _transcript_of(tester.received, call.call_id)).payload
    expected = _words(SENTENCE)  # 8 kHz telephone band: a word or two may go ("fee" → "people")
    assert len(expected & _words(t.text)) >= len(expected) - 2, t.text
    assert t.utterance_id == "u-2"

    quiet = Envelope(call_id=f"call-{uuid.uuid4().hex}", tenant_id="demo", campaign_id="acme-card")
    await tester.publish(
        topics.UTTERANCES,
        AudioUtterance(utterance_id="u-3", pcm=b"\x00\x00" * 16000, sample_rate=16000, last_part=True),
        cause=quiet,
    )
    empty = (await _transcript_of(tester.received, quiet.call_id)).payload
    assert empty.utterance_id == "u-3"
    assert empty.text == "" or empty.confidence < 0.5
