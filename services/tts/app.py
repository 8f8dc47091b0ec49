"""tts: dialogue.replies → Piper → tts.audio chunks to the live call's media worker inbox, streamed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from pydantic import Field

from services.tts.packets import TurnSequencer, split_pcm, target_rate
from services.tts.voice import PiperSpeaker
from voicebot import config, interruptions, topics
from voicebot.bus import Event
from voicebot.events import ApprovedReply, TtsAudio
from voicebot.service import Service

log = structlog.get_logger("tts")


class Settings(config.Settings):
    tts_voice: str = Field(
        "", description="Piper .onnx voice path (its .onnx.json beside it); empty: shipped joe"
    )


async def _in_thread(speaker: PiperSpeaker, text: str, rate: int) -> AsyncIterator[bytes]:
    """Iterate Piper in a worker thread and hand each sentence's audio over the moment it exists."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()

    def produce() -> None:
        try:
            for pcm in speaker.stream(text, rate):
                loop.call_soon_threadsafe(queue.put_nowait, pcm)
        except BaseException as exc:  # re-raised in the handler, which retries or dead-letters
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    worker = asyncio.ensure_future(asyncio.to_thread(produce))
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        await worker


def build(settings: Settings) -> Service:
    svc = Service("tts", settings)
    sequencer = TurnSequencer()
    cut = interruptions.follow(svc)
    state: dict[str, PiperSpeaker] = {}

    @svc.on_start
    async def load_voice() -> None:
        def load() -> PiperSpeaker:
            speaker = PiperSpeaker(settings.tts_voice)
            speaker.warm_up()
            return speaker

        state["speaker"] = await asyncio.to_thread(load)
        log.info("tts voice loaded", voice=str(state["speaker"].voice_path))

    @svc.bus.on(topics.REPLIES, ApprovedReply)
    async def speak(event: Event[ApprovedReply]) -> None:
        reply, env = event.payload, event.envelope
        if reply.turn_id in cut:
            return
        if not env.media_node:
            raise ValueError("reply has no media_node: no worker inbox to deliver audio to")
        inbox, rate = topics.node_inbox(env.media_node), target_rate(reply.sample_rate)

        async def send(pcm: bytes, final: bool) -> None:
            audio = TtsAudio(
                turn_id=reply.turn_id,
                seq=sequencer.next(reply.turn_id),
                pcm=pcm,
                sample_rate=rate,
                final=final,
                end_call=reply.end_call,
                text=reply.text,
            )
            await svc.bus.publish(inbox, audio, cause=env)

        # Every piece goes out at once, except that the reply's last piece is held until Piper is done,
        # so only that one carries final=True (a one-sentence reply waits for nothing).
        held: bytes | None = None
        async for sentence in _in_thread(state["speaker"], reply.text, rate):
            if reply.turn_id in cut:
                log.info("reply cut by barge-in; synthesis stopped", turn_id=reply.turn_id)
                return
            for piece in split_pcm(sentence):
                if held is not None:
                    await send(held, False)
                    held = None
                if reply.final:
                    held = piece
                else:
                    await send(piece, False)
        if reply.final:
            await send(held or b"", True)  # an empty reply still tells the worker the turn is over

    return svc
