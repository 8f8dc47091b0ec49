"""tts on the real broker with the shipped Piper voice: replies in, numbered audio in the worker's inbox."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from services.tts.app import Settings, build
from tests.support import call_chunks, listening_bus, running
from voicebot import topics
from voicebot.broker import create_topics
from voicebot.bus import Bus
from voicebot.events import ApprovedReply, Envelope, TtsAudio
from voicebot.service import Service

NODE = f"tts-test-{uuid.uuid4().hex[:8]}"
INBOX = topics.node_inbox(NODE)


@pytest.fixture(scope="module")
async def tts(kafka_bootstrap: str) -> AsyncIterator[Service]:
    """The service in-process, voice loaded once for the module."""
    await create_topics(kafka_bootstrap, {INBOX: 1})  # a media worker's inbox exists while the worker lives
    svc = build(Settings(kafka_bootstrap=kafka_bootstrap, handler_retries=2))
    async with running(svc, 60):
        yield svc


@pytest.fixture(scope="module")
async def worker(kafka_bootstrap: str) -> AsyncIterator[Bus]:
    """Plays compliance (publishes replies) and the media worker (reads its inbox into `worker.received`)."""
    async with listening_bus(kafka_bootstrap, INBOX, TtsAudio) as bus:
        yield bus


def _call() -> Envelope:
    return Envelope(
        call_id=f"call-{uuid.uuid4().hex}", tenant_id="demo", campaign_id="acme-card", media_node=NODE
    )


async def test_two_sentence_reply_streams_numbered_audio_to_the_inbox(tts: Service, worker: Bus) -> None:
    call = _call()
    first = "The Acme Cash Card has no annual fee. You get two percent cash back."
    last = "Is there anything else you would like to know?"
    await worker.publish(
        topics.REPLIES, ApprovedReply(turn_id="t1", seq=0, text=first, sample_rate=8000), cause=call
    )
    await worker.publish(
        topics.REPLIES,
        ApprovedReply(turn_id="t1", seq=1, text=last, final=True, end_call=True, sample_rate=8000),
        cause=call,
    )
    chunks = await call_chunks(worker.received, call.call_id)
    audio = [c.payload for c in chunks]
    assert [a.seq for a in audio] == list(range(len(audio)))
    assert len(audio) >= 3  # Piper speaks one chunk per sentence: two for the first reply, one for the last
    assert [a.final for a in audio] == [False] * (len(audio) - 1) + [True]
    assert all(a.turn_id == "t1" and a.sample_rate == 8000 and len(a.pcm) % 2 == 0 for a in audio)
    assert audio[0].text == first and audio[-1].text == last
    assert audio[-1].end_call and not audio[0].end_call
    seconds = sum(len(a.pcm) for a in audio) / 2 / 8000
    assert 3.0 < seconds < 15.0, seconds
    assert all(len(a.pcm) > 8000 for a in audio)  # real speech, not silence stubs: > 0.5 s each
    assert all(c.envelope.media_node == NODE for c in chunks)
    assert [m.stage for m in chunks[0].envelope.marks] == ["tester.out", "tts.in", "tts.out", "tester.in"]


async def test_rate_defaults_to_16k_and_empty_final_reply_still_ends_the_turn(
    tts: Service, worker: Bus
) -> None:
    call = _call()
    await worker.publish(topics.REPLIES, ApprovedReply(turn_id="t2", seq=0, text="Goodbye."), cause=call)
    await worker.publish(topics.REPLIES, ApprovedReply(turn_id="t2", seq=1, text="", final=True), cause=call)
    audio = [c.payload for c in await call_chunks(worker.received, call.call_id)]
    assert [a.seq for a in audio] == [0, 1]
    assert audio[0].sample_rate == 16000 and len(audio[0].pcm) > 16000 and not audio[0].final
    assert audio[1].final and audio[1].pcm == b""
