"""asr: audio.utterances → faster-whisper → asr.transcripts (empty text too, so dialogue can re-prompt)."""

from __future__ import annotations

import asyncio

import structlog
from pydantic import Field

from services.asr.recognizer import WhisperRecognizer
from services.asr.utterances import PartAssembler
from voicebot import config, topics
from voicebot.bus import Event
from voicebot.events import AudioUtterance, Transcript
from voicebot.service import Service

log = structlog.get_logger("asr")


class Settings(config.Settings):
    asr_model: str = Field("", description="faster-whisper model path or name; empty: shipped tiny.en")
    asr_compute_type: str = Field("int8", pattern=r"^(int8|int8_float16|int8_float32|int16|float16|float32)$")
    asr_threads: int = Field(2, ge=1, le=64, description="CPU threads per transcription")
    asr_beam_size: int = Field(1, ge=1, le=10, description="1 = greedy, the lowest latency")
    asr_device: str = Field("cpu", pattern=r"^(cpu|cuda|auto)$")
    asr_language: str = Field("en", pattern=r"^([a-z]{2,3})?$", description="empty: detect per utterance")


def build(settings: Settings) -> Service:
    svc = Service("asr", settings)
    parts = PartAssembler()
    state: dict[str, WhisperRecognizer] = {}

    @svc.on_start
    async def load_model() -> None:
        def load() -> WhisperRecognizer:
            recognizer = WhisperRecognizer(
                settings.asr_model,
                device=settings.asr_device,
                compute_type=settings.asr_compute_type,
                threads=settings.asr_threads,
                beam_size=settings.asr_beam_size,
                language=settings.asr_language,
            )
            recognizer.warm_up()
            return recognizer

        state["recognizer"] = await asyncio.to_thread(load)
        log.info("asr model loaded", model=state["recognizer"].model_ref)

    @svc.bus.on(topics.UTTERANCES, AudioUtterance)
    async def transcribe(event: Event[AudioUtterance]) -> None:
        speech = parts.add(event.payload)
        if speech is None:
            return
        result = await asyncio.to_thread(state["recognizer"].transcribe, speech.pcm, speech.sample_rate)
        log.info(
            "transcribed",
            chars=len(result.text),
            confidence=round(result.confidence, 3),
            processing_s=round(result.processing_s, 3),
        )
        await svc.bus.publish(
            topics.TRANSCRIPTS,
            Transcript(
                utterance_id=speech.utterance_id,
                text=result.text,
                confidence=result.confidence,
                language=result.language,
                speech_start_us=speech.speech_start_us,
                speech_end_us=speech.speech_end_us,
                processing_s=result.processing_s,
            ),
            cause=event.envelope,
        )

    return svc
