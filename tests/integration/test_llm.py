"""llm with the shipped MiniLM model: retrieval accuracy on the demo FAQ, the OpenAI-compatible path
against a protocol test double of vLLM, and the service answering on the real broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from services.llm.app import Settings, build, make_responder
from services.llm.embedder import SentenceEmbedder
from services.llm.responders import OpenAICompatibleResponder, Reply, Retriever
from tests.doubles.openai_protocol_server import OpenAIProtocolServer
from tests.support import call_chunks, listening_bus, running
from voicebot import topics
from voicebot.bus import Bus
from voicebot.campaigns import Campaign, CampaignBook
from voicebot.config import REPO_ROOT
from voicebot.events import BotText, ChatTurn, Envelope, LlmRequest
from voicebot.service import Service

CAMPAIGN = CampaignBook(REPO_ROOT / "campaigns").get("acme-card")
MIN_SCORE = Settings().llm_min_score
CAMPAIGN_RATE_ANSWER = (
    "The interest rate is eighteen point nine percent a year on purchases, "
    "with zero percent for the first twelve months."
)

# paraphrases and ASR-like slips of each demo FAQ question → the heading it must retrieve
PARAPHRASES = {
    "what's the annual fee": "What is the annual fee?",
    "is there a yearly fee": "What is the annual fee?",
    "does it have an annual fee": "What is the annual fee?",
    "how much does the card cost per year": "What is the annual fee?",
    "what's the and you'll fee": "What is the annual fee?",
    "uh what is the um annual fee": "What is the annual fee?",
    "how much cash back will I get": "How much cash back do I get?",
    "what's the cashback rate": "How much cash back do I get?",
    "how much cash bag do I get": "How much cash back do I get?",
    "what's the interest rate": "What is the interest rate?",
    "how much interest will I pay": "What is the interest rate?",
    "how can I apply": "How do I apply?",
    "can I apply online": "How do I apply?",
    "are there fees for using it abroad": "Is there a foreign transaction fee?",
    "any fees when I travel": "Is there a foreign transaction fee?",
    "when will the card arrive": "When will I receive the card?",
    "how long until I get the card": "When will I receive the card?",
    "what's my credit limit": "What is the credit limit?",
    "what's the credit line": "What is the credit limit?",
    "can I add an authorized user": "Can I add another person to my account?",
    "can I add my husband": "Can I add another person to my account?",
}
OFF_TOPIC = [
    "what's the weather like today",
    "who won the football game",
    "what time is it",
    "do you sell car insurance",
    "what is the capital of France",
    "tell me a joke",
    "I want a mortgage",
    "how do I reset my online banking password",
    "are you a robot",
    "can you call me back later",
    "what's the stock price of Acme",
    "what's your return policy",
    "can I get a loan for a car",
    "do you have a savings account",
    "is this a scam",
]


@pytest.fixture(scope="module")
def retriever() -> Retriever:
    return Retriever(SentenceEmbedder())


@pytest.fixture(scope="module")
def llm_server() -> Iterator[OpenAIProtocolServer]:
    with OpenAIProtocolServer(api_key="sk-test") as server:
        yield server


def _request(question: str, **kw) -> LlmRequest:
    return LlmRequest(turn_id=f"t-{uuid.uuid4().hex[:8]}", question=question, **kw)


async def _said(reply: Reply) -> list[str]:
    return [s async for s in reply.sentences]


# --- retrieval ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("question", sorted(PARAPHRASES))
async def test_paraphrases_retrieve_their_faq_entry(retriever: Retriever, question: str) -> None:
    [hit] = await retriever.search(CAMPAIGN, question, 1)
    assert hit.entry.question == PARAPHRASES[question]
    assert hit.score >= MIN_SCORE, hit.score


async def test_off_topic_questions_score_below_the_threshold(retriever: Retriever) -> None:
    scores = {q: (await retriever.search(CAMPAIGN, q, 1))[0].score for q in OFF_TOPIC}
    assert max(scores.values()) < MIN_SCORE, scores


# --- OpenAI-compatible path, against the vLLM protocol double -----------------------------------------


def _openai(retriever: Retriever, server: OpenAIProtocolServer, **kw) -> OpenAICompatibleResponder:
    settings = Settings(
        **{"llm_backend": "openai", "llm_base_url": server.base_url, "llm_api_key": "sk-test", **kw}
    )
    responder = make_responder(settings, retriever)
    assert isinstance(responder, OpenAICompatibleResponder)
    return responder


async def test_openai_streams_sentences_from_a_grounded_prompt(retriever, llm_server) -> None:
    llm_server.reply = "There is no annual fee, ever. You also get two percent cash back! Anything else?"
    responder = _openai(retriever, llm_server)
    history = [ChatTurn(role="bot", text="Do you have any questions about the card?")]
    request = _request("what's the annual fee", history=history, persona="a polite assistant", max_tokens=77)
    try:
        reply = await responder.respond(request, CAMPAIGN)
        assert reply.grounded and reply.sources == ["acme-card.md#what-is-the-annual-fee"]
        assert await _said(reply) == [
            "There is no annual fee, ever.",
            "You also get two percent cash back!",
            "Anything else?",
        ]
        assert reply.usage.completion_tokens == 15 and reply.usage.prompt_tokens > 50
    finally:
        await responder.close()
    body = llm_server.requests[-1]
    assert body["model"] == "voicebot" and body["max_tokens"] == 77 and body["stream"] is True
    system = body["messages"][0]["content"]
    assert "You are Alex, a polite assistant" in system and "Acme Bank" in system
    assert system.index("- Q: What is the annual fee?") < system.index(
        "- Q:", system.index("annual fee")
    )  # best first
    assert "A: The Acme Cash Card has no annual fee, ever." in system
    assert system.count("- Q:") == Settings().llm_top_k
    assert [m["role"] for m in body["messages"][1:]] == ["assistant", "user"]
    assert body["messages"][-1]["content"] == "what's the annual fee"


async def test_openai_default_double_answers_from_the_top_fact(retriever, llm_server) -> None:
    llm_server.reply = None
    responder = _openai(retriever, llm_server, llm_max_tokens=99)
    try:
        reply = await responder.respond(_request("when will the card arrive"), CAMPAIGN)
        assert await _said(reply) == ["The card arrives by mail within seven business days after approval."]
    finally:
        await responder.close()
    assert llm_server.requests[-1]["max_tokens"] == 99


async def test_openai_error_deadline_and_bad_key_fall_back_to_the_no_answer_line(
    retriever, llm_server
) -> None:
    no_answer = CAMPAIGN.say(CAMPAIGN.lines.no_answer_in_kb)
    llm_server.reply = "There is no annual fee. Two percent cash back."
    responder = _openai(retriever, llm_server)
    try:
        llm_server.status = 500
        reply = await responder.respond(_request("what's the annual fee"), CAMPAIGN)
        assert await _said(reply) == [no_answer] and not reply.grounded and reply.sources == []
        llm_server.status, llm_server.delay_s = 200, 0.1
        reply = await responder.respond(_request("what's the annual fee", deadline_ms=300), CAMPAIGN)
        assert await _said(reply) == [no_answer] and not reply.grounded
    finally:
        llm_server.status, llm_server.delay_s = 200, 0.0
        await responder.close()
    unauthorised = _openai(retriever, llm_server, llm_api_key="wrong")
    try:
        assert await _said(await unauthorised.respond(_request("what's the annual fee"), CAMPAIGN)) == [
            no_answer
        ]
    finally:
        await unauthorised.close()


# --- the service on the real broker (knowledge-base backend) -------------------------------------------


@pytest.fixture(scope="module")
async def llm(kafka_bootstrap: str) -> AsyncIterator[Service]:
    svc = build(Settings(kafka_bootstrap=kafka_bootstrap, handler_retries=2))
    async with running(svc, 120):
        yield svc


@pytest.fixture(scope="module")
async def dialogue(kafka_bootstrap: str) -> AsyncIterator[Bus]:
    """Plays dialogue (publishes requests) and compliance (reads llm.replies into `dialogue.received`)."""
    async with listening_bus(kafka_bootstrap, topics.LLM_REPLIES, BotText) as bus:
        yield bus


def _call(campaign: Campaign = CAMPAIGN) -> Envelope:
    return Envelope(
        call_id=f"call-{uuid.uuid4().hex}",
        tenant_id=campaign.tenant,
        campaign_id=campaign.id,
        media_node="w1",
    )


async def test_service_answers_from_the_faq_then_the_follow_up(llm: Service, dialogue: Bus) -> None:
    call = _call()
    follow_up = CAMPAIGN.lines.anything_else
    await dialogue.publish(
        topics.LLM_REQUESTS, _request("what's the annual fee", follow_up=follow_up), cause=call
    )
    chunks = await call_chunks(dialogue.received, call.call_id)
    texts = [c.payload.text for c in chunks]
    assert texts == ["The Acme Cash Card has no annual fee, ever.", follow_up]
    assert [c.payload.seq for c in chunks] == [0, 1]
    assert [c.payload.final for c in chunks] == [False, True]
    assert all(c.payload.grounded for c in chunks)
    assert list(chunks[0].payload.sources) == ["acme-card.md#what-is-the-annual-fee"]
    assert chunks[-1].payload.HasField("usage") and not chunks[0].payload.HasField("usage")
    assert all(c.payload.sample_rate == 0 and c.envelope.media_node == "w1" for c in chunks)
    assert [m.stage for m in chunks[0].envelope.marks] == ["tester.out", "llm.in", "llm.out", "tester.in"]


async def test_service_multi_sentence_answer_and_off_topic(llm: Service, dialogue: Bus) -> None:
    call = _call()
    await dialogue.publish(topics.LLM_REQUESTS, _request("what's the interest rate"), cause=call)
    await dialogue.publish(topics.LLM_REQUESTS, _request("what's the weather like today"), cause=call)
    answer = [c.payload for c in await call_chunks(dialogue.received, call.call_id)]
    assert [a.text for a in answer] == [CAMPAIGN_RATE_ANSWER]
    assert answer[0].final and answer[0].grounded
    refusal = [c.payload for c in await call_chunks(dialogue.received, call.call_id)]
    assert [r.text for r in refusal] == [CAMPAIGN.say(CAMPAIGN.lines.no_answer_in_kb)]
    assert refusal[0].final and not refusal[0].grounded and list(refusal[0].sources) == []
