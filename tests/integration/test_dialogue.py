"""dialogue on the real broker: greets an answered call, asks the LLM a question, honours an opt-out."""

from __future__ import annotations

import asyncio
import uuid

from services.dialogue.app import Settings, build
from tests.support import running, until
from voicebot import topics
from voicebot.bus import Bus, Event
from voicebot.config import Settings as BaseSettings
from voicebot.events import BotText, CallLifecycle, Contact, Envelope, LlmRequest, Outcome, Transcript


async def test_greeting_question_and_opt_out(settings: BaseSettings) -> None:
    call = f"call-{uuid.uuid4().hex}"
    client = Bus("test-telephony", settings)
    seen: dict[str, list[Event]] = {topics.LLM_REPLIES: [], topics.LLM_REQUESTS: [], topics.OUTCOMES: []}
    group = f"watch-{uuid.uuid4().hex}"
    for topic, payload in (
        (topics.LLM_REPLIES, BotText),
        (topics.LLM_REQUESTS, LlmRequest),
        (topics.OUTCOMES, Outcome),
    ):

        @client.on(topic, payload, group=group)
        async def _keep(event: Event, topic: str = topic) -> None:
            if event.envelope.call_id == call:
                seen[topic].append(event)

    cause = Envelope(
        tenant_id="demo", campaign_id="acme-card", call_id=call, contact_id="c-1", media_node="w7"
    )
    contact = Contact(contact_id="c-1", phone_e164="+15550103001", name="Ada", profile={"city": "Boston"})
    await client.start()
    try:
        async with running(build(Settings(**settings.model_dump()))):
            answered = CallLifecycle(kind=CallLifecycle.ANSWERED, contact=contact, sample_rate=8000)
            await client.publish(topics.LIFECYCLE, answered, cause=cause)
            chunks = await until(lambda: len(seen[topics.LLM_REPLIES]) >= 4 and seen[topics.LLM_REPLIES])
            texts = [e.payload for e in chunks]
            assert (
                texts[0].text
                == "Hello Ada, this is Alex, an automated assistant calling on behalf of Acme Bank."
            )
            assert [t.seq for t in texts] == [0, 1, 2, 3]
            assert [t.final for t in texts] == [False, False, False, True]
            assert len({t.turn_id for t in texts}) == 1 and not any(t.end_call for t in texts)
            assert all(t.sample_rate == 8000 for t in texts)
            assert all(e.envelope.media_node == "w7" for e in chunks)

            question = Transcript(utterance_id="u1", text="What is the annual fee?")
            await client.publish(topics.TRANSCRIPTS, question, cause=cause)
            await client.publish(topics.TRANSCRIPTS, question, cause=cause)  # same utterance, new event id
            (request,) = await until(lambda: seen[topics.LLM_REQUESTS])
            ask = request.payload
            assert ask.question == "What is the annual fee?"
            assert ask.follow_up == "Is there anything else you would like to know?"
            assert ask.history[0].role == "bot" and "Hello Ada" in ask.history[0].text
            assert ask.knowledge_base == "faq/acme-card.md" and ask.deadline_ms > 0 and ask.max_tokens > 0
            assert ask.turn_id and ask.profile["city"] == "Boston"

            await client.publish(
                topics.TRANSCRIPTS, Transcript(utterance_id="u2", text="stop calling me"), cause=cause
            )
            (outcome,) = await until(lambda: seen[topics.OUTCOMES])
            assert outcome.payload.disposition == "opted_out" and outcome.payload.opt_out
            assert outcome.payload.contact.phone_e164 == "+15550103001"
            goodbye = await until(
                lambda: [e.payload for e in seen[topics.LLM_REPLIES][4:] if e.payload.final]
            )
            assert goodbye[0].end_call and "removed your number" in " ".join(
                e.payload.text for e in seen[topics.LLM_REPLIES][4:]
            )
            ended = CallLifecycle(kind=CallLifecycle.ENDED, contact=contact, answered=True, hangup_by="bot")
            await client.publish(topics.LIFECYCLE, ended, cause=cause)
            await asyncio.sleep(1.0)
            assert len(seen[topics.OUTCOMES]) == 1  # the outcome was published already
            assert len(seen[topics.LLM_REQUESTS]) == 1  # the replayed question was not asked twice
    finally:
        await client.stop()
