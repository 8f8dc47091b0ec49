"""Who writes the answer: a `Responder` turns an `LlmRequest` into sentences, grounded or not.

`KnowledgeBaseResponder` answers with the FAQ's own words (local default, no generative model: it cannot
invent); `OpenAICompatibleResponder` streams from a vLLM (or any OpenAI-compatible) server, grounded
in the same retrieval. Both are adapters; their rules live in knowledge, prompt, sentences and sse.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import structlog

from services.llm.embedder import SentenceEmbedder
from services.llm.knowledge import Hit, KnowledgeIndex, parse_faq
from services.llm.prompt import build_messages
from services.llm.sentences import SentenceSplitter, split_sentences
from services.llm.sse import SseDecoder, parse_chunk
from voicebot.campaigns import Campaign
from voicebot.events import LlmRequest, Usage

log = structlog.get_logger("llm.responders")


@dataclass(slots=True)
class Reply:
    """Sentences as they become ready; `grounded`/`sources` may change (fallback) before the first one,
    `usage` is complete once `sentences` is exhausted."""

    sentences: AsyncIterator[str]
    grounded: bool
    sources: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


class Responder(Protocol):
    async def respond(self, request: LlmRequest, campaign: Campaign) -> Reply: ...

    async def close(self) -> None: ...


class Retriever:
    """The embedding model and one `KnowledgeIndex` per campaign (built once, embedding is the slow part)."""

    def __init__(self, embedder: SentenceEmbedder) -> None:
        self.embedder = embedder
        self._indexes: dict[tuple[str, str], KnowledgeIndex] = {}

    def index(self, campaign: Campaign) -> KnowledgeIndex:
        """Blocking (run in a thread): parse and embed the campaign's FAQ the first time it is asked for."""
        key = (campaign.id, str(campaign.knowledge_base))
        if key not in self._indexes:
            entries = parse_faq(campaign.faq_text, campaign.knowledge_base.name)
            self._indexes[key] = KnowledgeIndex(entries, self.embedder)
        return self._indexes[key]

    async def search(self, campaign: Campaign, query: str, k: int) -> list[Hit]:
        return await asyncio.to_thread(lambda: self.index(campaign).search(query, k))


async def _lines(*sentences: str) -> AsyncIterator[str]:
    for s in sentences:
        yield s


def _no_answer(request: LlmRequest, campaign: Campaign) -> str:
    return campaign.say(campaign.lines.no_answer_in_kb, dict(request.profile))


class KnowledgeBaseResponder:
    """Top-1 FAQ entry above `min_score` → its answer, sentence by sentence; else the no-answer line."""

    def __init__(self, retriever: Retriever, min_score: float) -> None:
        self.retriever = retriever
        self.min_score = min_score

    async def respond(self, request: LlmRequest, campaign: Campaign) -> Reply:
        hits = await self.retriever.search(campaign, request.question, 1)
        if hits and hits[0].score >= self.min_score:
            best = hits[0]
            log.info("kb answer", score=round(best.score, 3), source=best.entry.source)
            return Reply(_lines(*split_sentences(best.entry.answer)), True, [best.entry.source])
        log.info("kb has no answer", score=round(hits[0].score, 3) if hits else None)
        return Reply(_lines(_no_answer(request, campaign)), False)

    async def close(self) -> None:
        return None


class OpenAICompatibleResponder:
    """Streams `/v1/chat/completions` and yields each sentence the moment it is complete.

    On a server error, a timeout or an empty answer before any sentence was yielded, the campaign's
    no-answer line is said instead: the customer never hears silence or an invented fact.
    """

    def __init__(
        self,
        retriever: Retriever,
        *,
        base_url: str,
        model: str,
        api_key: str = "",
        min_score: float,
        top_k: int = 3,
        max_tokens: int = 160,
        temperature: float = 0.2,
        deadline_ms: int = 6000,
    ) -> None:
        self.retriever = retriever
        self.url = base_url.rstrip("/") + "/v1/chat/completions"
        self.model = model
        self.min_score, self.top_k = min_score, top_k
        self.max_tokens, self.temperature, self.deadline_ms = max_tokens, temperature, deadline_ms
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(deadline_ms / 1000))

    async def respond(self, request: LlmRequest, campaign: Campaign) -> Reply:
        hits = await self.retriever.search(campaign, request.question, self.top_k)
        relevant = [h for h in hits if h.score >= self.min_score]
        no_answer = _no_answer(request, campaign)
        body = {
            "model": self.model,
            "messages": build_messages(
                request.question,
                request.history,
                persona=request.persona,
                agent=campaign.agent_name,
                company=campaign.company,
                hits=hits,
                no_answer=no_answer,
            ),
            "max_tokens": request.max_tokens or self.max_tokens,
            "temperature": self.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        reply = Reply(_lines(), bool(relevant), [h.entry.source for h in relevant])
        reply.sentences = self._stream(body, request.deadline_ms or self.deadline_ms, reply, no_answer)
        return reply

    async def _stream(self, body: dict, deadline_ms: int, reply: Reply, no_answer: str) -> AsyncIterator[str]:
        deadline = time.monotonic() + deadline_ms / 1000
        said = 0
        try:
            timeout = httpx.Timeout(deadline_ms / 1000)
            async with self.client.stream("POST", self.url, json=body, timeout=timeout) as response:
                if response.status_code != 200:
                    detail = (await response.aread())[:300].decode(errors="replace")
                    raise RuntimeError(f"LLM server answered {response.status_code}: {detail}")
                splitter, decoder = SentenceSplitter(), SseDecoder()
                async for line in response.aiter_lines():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no complete answer within {deadline_ms} ms")
                    data = decoder.feed(line)
                    if data is None:
                        continue
                    chunk = parse_chunk(data)
                    if chunk.done:
                        break
                    if chunk.prompt_tokens is not None:
                        reply.usage.prompt_tokens = chunk.prompt_tokens
                    if chunk.completion_tokens is not None:
                        reply.usage.completion_tokens = chunk.completion_tokens
                    for sentence in splitter.feed(chunk.content):
                        said += 1
                        yield sentence
                for sentence in splitter.flush():
                    said += 1
                    yield sentence
        except (httpx.HTTPError, TimeoutError, RuntimeError, ValueError) as exc:
            log.warning("llm stream failed", error=f"{type(exc).__name__}: {exc}", sentences_said=said)
        if said == 0:
            reply.grounded, reply.sources = False, []
            yield no_answer

    async def close(self) -> None:
        await self.client.aclose()
