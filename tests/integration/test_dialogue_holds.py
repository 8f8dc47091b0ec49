"""dialogue on the real broker: an unfinished phrase is held and joined to its rest, once per turn."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from services.dialogue.app import Settings, build
from tests.support import running, until
from voicebot import topics
from voicebot.bus import Bus, Event, now_us
from voicebot.config import Settings as BaseSettings
from voicebot.events import BotText, CallLifecycle, Envelope, LlmRequest, Transcript

HOLD_INCOMPLETE_S = 1.5  # the default dialogue_turn_hold_incomplete_ms


class Watcher:
    """Publishes as telephony and asr; keeps what dialogue publishes, per call."""

    def __init__(self, settings: BaseSettings) -> None:
        self.bus = Bus("test-turns", settings)
        self.requests: list[Event[LlmRequest]] = []
        self.lines: list[Event[BotText]] = []
        group = f"watch-{uuid.uuid4().hex}"

        @self.bus.on(topics.LLM_REQUESTS, LlmRequest, group=group)
        async def _request(event: Event[LlmRequest]) -> None:
            self.requests.append(event)

        @self.bus.on(topics.LLM_REPLIES, BotText, group=group)
        async def _line(event: Event[BotText]) -> None:
            self.lines.append(event)

    def of(self, events: list, call: str) -> list:
        return [e for e in events if e.envelope.call_id == call]

    async def say(self, call: str, uid: str, text: str, start_us: int, end_us: int) -> None:
        said = Transcript(utterance_id=uid, text=text, speech_start_us=start_us, speech_end_us=end_us)
        await self.bus.publish(topics.TRANSCRIPTS, said, cause=cause(call))


def cause(call: str) -> Envelope:
    return Envelope(tenant_id="demo", campaign_id="acme-card", call_id=call, media_node="w1")


@pytest.fixture(scope="module")
def kafka_bootstrap(own_kafka_bootstrap: str) -> str:
    """This module's own broker (tests/conftest.py: own_kafka_bootstrap)."""
    return own_kafka_bootstrap


@pytest.fixture(scope="module")
async def watcher(kafka_bootstrap: str) -> AsyncIterator[Watcher]:
    settings = BaseSettings(kafka_bootstrap=kafka_bootstrap, handler_retries=2)
    w = Watcher(settings)
    await w.bus.start()
    try:
        async with running(build(Settings(**settings.model_dump()))):
            yield w
    finally:
        await w.bus.stop()


async def test_the_rest_of_a_phrase_joins_it_and_a_replay_is_not_answered_again(watcher: Watcher) -> None:
    call = f"call-{uuid.uuid4().hex}"
    t = now_us()
    await watcher.say(call, "u1", "I'd like to know...", t - 1_000_000, t)
    await asyncio.sleep(0.3)
    assert watcher.of(watcher.requests, call) == [] and watcher.of(watcher.lines, call) == []
    await watcher.say(call, "u2", "about the annual fee.", t + 700_000, now_us())
    (request,) = await until(lambda: watcher.of(watcher.requests, call))
    assert request.payload.question == "I'd like to know about the annual fee."

    await watcher.say(call, "u1", "I'd like to know...", t - 1_000_000, t)  # replays, new event ids
    await watcher.say(call, "u2", "about the annual fee.", t + 700_000, now_us())
    await asyncio.sleep(HOLD_INCOMPLETE_S + 0.5)
    assert len(watcher.of(watcher.requests, call)) == 1
    assert watcher.of(watcher.lines, call) == []


async def test_speech_that_started_again_holds_even_a_complete_phrase(watcher: Watcher) -> None:
    call = f"call-{uuid.uuid4().hex}"
    t = now_us()
    onset = CallLifecycle(kind=CallLifecycle.SPEECH_STARTED, speech_start_us=t)
    await watcher.bus.publish(topics.LIFECYCLE, onset, cause=cause(call))
    await asyncio.sleep(0.5)  # the onset reaches dialogue before the transcript of the words before it
    await watcher.say(call, "u1", "Yes.", t - 1_200_000, t - 600_000)
    await asyncio.sleep(HOLD_INCOMPLETE_S)
    assert watcher.of(watcher.lines, call) == [] and watcher.of(watcher.requests, call) == []
    await watcher.say(call, "u2", "And what is the annual fee?", t, now_us())
    (request,) = await until(lambda: watcher.of(watcher.requests, call))
    assert request.payload.question == "Yes. And what is the annual fee?"


async def test_an_unfinished_phrase_alone_is_answered_after_its_hold(watcher: Watcher) -> None:
    call = f"call-{uuid.uuid4().hex}"
    sent = time.monotonic()
    await watcher.say(call, "u1", "My card number is...", now_us() - 900_000, now_us())
    lines = await until(lambda: watcher.of(watcher.lines, call))
    waited = time.monotonic() - sent
    assert waited >= HOLD_INCOMPLETE_S - 0.2  # held for the silence, not answered at once
    assert lines[0].payload.text  # the policy answered it (a "didn't catch that" re-prompt)
