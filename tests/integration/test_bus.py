"""The bus on the real broker: envelope round trip, timeline marks, dedupe, retries and the DLQ."""

from __future__ import annotations

import asyncio
import uuid

from voicebot.bus import Bus, Event, decode, encode
from voicebot.config import Settings
from voicebot.events import DeadLetter, Envelope, Transcript


async def _collect(bus: Bus, topic: str, *types, group: str) -> asyncio.Queue[Event]:
    queue: asyncio.Queue[Event] = asyncio.Queue()

    @bus.on(topic, *types, group=group)
    async def _put(event: Event) -> None:
        await queue.put(event)

    return queue


async def test_publish_consume_keeps_ids_and_marks(settings: Settings) -> None:
    topic = "asr.transcripts"
    producer, consumer = Bus("producer", settings), Bus("consumer", settings)
    received = await _collect(consumer, topic, Transcript, group=f"g-{uuid.uuid4().hex}")
    await producer.start()
    await consumer.start()
    try:
        cause = Envelope(call_id=f"call-{uuid.uuid4().hex}", tenant_id="t1", media_node="w1")
        sent = await producer.publish(topic, Transcript(text="hello there"), cause=cause)
        event = await asyncio.wait_for(_wait_for(received, sent.event_id), 20)
        assert event.payload.text == "hello there"
        assert event.envelope.call_id == cause.call_id
        assert event.envelope.media_node == "w1"
        assert event.envelope.producer == "producer"
        assert [m.stage for m in event.envelope.marks] == ["producer.out", "consumer.in"]
    finally:
        await producer.stop()
        await consumer.stop()


async def _wait_for(queue: asyncio.Queue[Event], event_id: str) -> Event:
    while True:
        event = await queue.get()
        if event.envelope.event_id == event_id:
            return event


async def test_malformed_and_failing_messages_go_to_dlq_and_consumer_goes_on(settings: Settings) -> None:
    topic = "llm.replies"
    group = f"g-{uuid.uuid4().hex}"
    service, watcher = Bus("svc", settings), Bus("watcher", settings)
    handled: asyncio.Queue[str] = asyncio.Queue()
    calls: list[str] = []

    @service.on(topic, Transcript, group=group)
    async def _handle(event: Event) -> None:
        calls.append(event.payload.text)
        if event.payload.text == "boom":
            raise RuntimeError("handler exploded")
        await handled.put(event.payload.text)

    letters = await _collect(watcher, f"{topic}.dlq", DeadLetter, group=f"w-{uuid.uuid4().hex}")
    await service.start()
    await watcher.start()
    try:
        call = Envelope(call_id=f"c-{uuid.uuid4().hex}")
        await service.broker.publish(b"\x00garbage\xff", topic, key=call.call_id.encode())
        await service.publish(topic, Transcript(text="boom"), cause=call)
        dup = await service.publish(topic, Transcript(text="ok"), cause=call)
        # the same event replayed (at-least-once) must not be handled twice
        await service.broker.publish(encode(Transcript(text="ok"), dup), topic, key=call.call_id.encode())
        await service.publish(topic, Transcript(text="after"), cause=call)

        assert await asyncio.wait_for(handled.get(), 20) == "ok"
        assert await asyncio.wait_for(handled.get(), 20) == "after"
        errors = [(await asyncio.wait_for(letters.get(), 20)).payload for _ in range(2)]
        assert "not an Envelope" in errors[0].error or "unexpected schema" in errors[0].error
        assert errors[0].original == b"\x00garbage\xff"
        assert "handler exploded" in errors[1].error
        assert errors[1].attempts == settings.handler_retries
        assert decode(errors[1].original, [Transcript]).payload.text == "boom"
        assert calls.count("ok") == 1 and calls.count("boom") == settings.handler_retries
        assert service.dlq_count == 2
    finally:
        await service.stop()
        await watcher.stop()


async def test_offsets_are_committed_after_handling_so_a_restart_does_not_replay(settings: Settings) -> None:
    topic, group = "crm.outcomes", f"g-{uuid.uuid4().hex}"
    producer = Bus("producer", settings)
    await producer.start()
    first = Bus("consumer", settings)
    got_first = await _collect(first, topic, Transcript, group=group)
    await first.start()
    try:
        call = Envelope(call_id=f"c-{uuid.uuid4().hex}")
        sent = [await producer.publish(topic, Transcript(text=f"m{i}"), cause=call) for i in range(3)]
        await asyncio.wait_for(_wait_for(got_first, sent[-1].event_id), 20)
    finally:
        await first.stop()
    second = Bus("consumer", settings)
    got_second = await _collect(second, topic, Transcript, group=group)
    await second.start()
    try:
        fresh = await producer.publish(topic, Transcript(text="new"), cause=call)
        event = await asyncio.wait_for(got_second.get(), 20)
        assert event.envelope.event_id == fresh.event_id, "a handled message was delivered again"
    finally:
        await second.stop()
        await producer.stop()
