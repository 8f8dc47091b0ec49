"""llm: llm.requests → a Responder (knowledge base or vLLM) → llm.replies, one BotText per sentence."""

from __future__ import annotations

import asyncio
from typing import Literal

import structlog
from pydantic import Field, SecretStr

from services.llm.embedder import SentenceEmbedder
from services.llm.responders import (
    KnowledgeBaseResponder,
    OpenAICompatibleResponder,
    Responder,
    Retriever,
)
from voicebot import config, interruptions, topics
from voicebot.bus import Event
from voicebot.campaigns import CampaignBook
from voicebot.events import BotText, LlmRequest
from voicebot.service import Service

log = structlog.get_logger("llm")


class Settings(config.Settings):
    llm_backend: Literal["kb", "openai"] = Field(
        "kb", description="kb: FAQ answers; openai: vLLM-compatible API"
    )
    llm_min_score: float = Field(0.5, ge=0.0, le=1.0, description="cosine below which the FAQ has no answer")
    llm_top_k: int = Field(3, ge=1, le=20, description="FAQ entries put into a generative prompt")
    llm_embedding_model: str = Field("", description="sentence-transformers folder; empty: shipped MiniLM")
    llm_base_url: str = Field("http://127.0.0.1:8000", pattern=r"^https?://", description="vLLM server")
    llm_model: str = Field(
        "voicebot", min_length=1, description="served model name (vllm --served-model-name)"
    )
    llm_api_key: SecretStr = Field(SecretStr(""), description="bearer token for the LLM server; empty: none")
    llm_max_tokens: int = Field(160, ge=16, le=4096, description="when the request gives none")
    llm_temperature: float = Field(0.2, ge=0.0, le=2.0)
    llm_deadline_ms: int = Field(6000, ge=100, le=60_000, description="when the request gives none")


def make_responder(settings: Settings, retriever: Retriever) -> Responder:
    if settings.llm_backend == "openai":
        return OpenAICompatibleResponder(
            retriever,
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key.get_secret_value(),
            min_score=settings.llm_min_score,
            top_k=settings.llm_top_k,
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
            deadline_ms=settings.llm_deadline_ms,
        )
    return KnowledgeBaseResponder(retriever, settings.llm_min_score)


def build(settings: Settings) -> Service:
    svc = Service("llm", settings)
    book = CampaignBook(settings.campaigns_dir)
    state: dict[str, Responder] = {}
    cut = interruptions.follow(svc)

    @svc.on_start
    async def load_model() -> None:
        def load() -> Retriever:
            retriever = Retriever(SentenceEmbedder(settings.llm_embedding_model))
            for campaign in book:  # embeds every FAQ now: warm-up, and no first-call penalty
                retriever.index(campaign)
            return retriever

        state["responder"] = make_responder(settings, await asyncio.to_thread(load))
        log.info("llm ready", backend=settings.llm_backend, campaigns=len(book))

    @svc.on_stop
    async def close() -> None:
        if "responder" in state:
            await state["responder"].close()

    @svc.bus.on(topics.LLM_REQUESTS, LlmRequest)
    async def answer(event: Event[LlmRequest]) -> None:
        request, env = event.payload, event.envelope
        campaign = book.get(env.campaign_id)
        reply = await state["responder"].respond(request, campaign)
        seq = 0

        async def send(text: str, final: bool) -> None:
            nonlocal seq
            chunk = BotText(
                turn_id=request.turn_id,
                seq=seq,
                text=text,
                final=final,
                grounded=reply.grounded,
                sources=reply.sources,
            )
            if final:
                chunk.usage.CopyFrom(reply.usage)
            await svc.bus.publish(topics.LLM_REPLIES, chunk, cause=env)
            seq += 1

        follow_up = request.follow_up.strip()
        # With a follow-up the last chunk is known in advance, so every sentence goes out the moment it is
        # ready; without one, a sentence waits for the next (or the end) to know whether it is final.
        held: str | None = None
        async for sentence in reply.sentences:
            if request.turn_id in cut:
                log.info("reply cut by barge-in; generation stopped", turn_id=request.turn_id)
                return
            if follow_up:
                await send(sentence, False)
                continue
            if held is not None:
                await send(held, False)
            held = sentence
        if follow_up:
            await send(follow_up, True)
        elif held is not None:
            await send(held, True)
        else:  # a responder always says something; guard the contract anyway
            await send(campaign.say(campaign.lines.no_answer_in_kb), True)

    return svc
