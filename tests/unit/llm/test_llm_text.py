"""Pure llm rules: FAQ parsing, streaming sentence splitting, SSE decoding, prompt building."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.llm.knowledge import FaqEntry, Hit, parse_faq, slug
from services.llm.prompt import build_messages, system_prompt
from services.llm.sentences import SentenceSplitter, split_sentences
from services.llm.sse import SseDecoder, parse_chunk
from voicebot.config import REPO_ROOT
from voicebot.events import ChatTurn

DEMO_FAQ = REPO_ROOT / "campaigns" / "faq" / "acme-card.md"


# --- FAQ ---------------------------------------------------------------------------------------------


def test_demo_faq_parses_into_question_answer_pairs() -> None:
    entries = parse_faq(Path(DEMO_FAQ).read_text(), "acme-card.md")
    assert len(entries) == 8
    assert entries[0] == FaqEntry(
        "What is the annual fee?",
        "The Acme Cash Card has no annual fee, ever.",
        "acme-card.md#what-is-the-annual-fee",
    )
    assert all(e.question.endswith("?") and e.answer and "#" not in e.answer for e in entries)


def test_faq_paragraphs_wrapping_and_other_headings() -> None:
    md = """# Title
intro text is not an answer

## First question?
line one
wrapped here.

second   paragraph.
## Empty question?

### A sub-heading ends the answer
not part of anything
## Last question
last answer"""
    entries = parse_faq(md)
    assert [(e.question, e.answer) for e in entries] == [
        ("First question?", "line one wrapped here.\n\nsecond paragraph."),
        ("Last question", "last answer"),
    ]
    assert entries[1].source == "faq#last-question"
    assert slug("What's the APR (per year)?") == "what-s-the-apr-per-year"
    assert parse_faq("") == []


# --- sentences ---------------------------------------------------------------------------------------


def test_sentences_come_out_as_soon_as_complete() -> None:
    s = SentenceSplitter()
    assert s.feed("The card has no annual") == []
    assert s.feed(" fee.") == []  # the full stop may still be "fee.5": wait for the space
    assert s.feed(" You get two") == ["The card has no annual fee."]
    assert s.feed(" percent back! Anything ") == ["You get two percent back!"]
    assert s.feed("else?") == []
    assert s.flush() == ["Anything else?"]
    assert s.flush() == []


def test_sentence_split_keeps_abbreviations_numbers_and_initials_together() -> None:
    text = (
        "Dr. Smith of Acme Inc. says the rate is 18.9 percent. Call J. Doe at 9 a.m. tomorrow. "
        'Really?! "Yes." Done'
    )
    assert split_sentences(text) == [
        "Dr. Smith of Acme Inc. says the rate is 18.9 percent.",
        "Call J. Doe at 9 a.m. tomorrow.",
        "Really?!",
        '"Yes."',
        "Done",
    ]


def test_sentence_split_on_paragraphs_and_list_numbers() -> None:
    assert split_sentences("First point\n\nSecond point") == ["First point", "Second point"]
    assert split_sentences("1. Apply online. 2. Wait a week.") == ["1. Apply online.", "2. Wait a week."]
    assert split_sentences("   ") == []


def test_char_by_char_stream_gives_the_same_sentences() -> None:
    text = "No annual fee, ever. Two percent cash back on every purchase! Is that all? Yes."
    s = SentenceSplitter()
    streamed = [x for ch in text for x in s.feed(ch)] + s.flush()
    assert (
        streamed
        == split_sentences(text)
        == [
            "No annual fee, ever.",
            "Two percent cash back on every purchase!",
            "Is that all?",
            "Yes.",
        ]
    )


# --- SSE ---------------------------------------------------------------------------------------------


def _chunk(content: str | None = None, finish: str | None = None, usage: dict | None = None) -> str:
    obj: dict = {"object": "chat.completion.chunk", "choices": []}
    if content is not None or finish is not None:
        obj["choices"] = [
            {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}
        ]
    if usage:
        obj["usage"] = usage
    return json.dumps(obj)


def test_sse_decoder_events_comments_and_multiline_data() -> None:
    d = SseDecoder()
    lines = [
        ": keep-alive",
        "",
        f"data: {_chunk('Hi')}",
        "",
        "event: x",
        "data:a",
        "data: b",
        "\r\n",
        "data: [DONE]",
    ]
    out = [x for line in lines if (x := d.feed(line)) is not None]
    assert out == [_chunk("Hi"), "a\nb"]
    assert d.flush() == "[DONE]"  # a stream may end without the last blank line


def test_parse_chunk_content_finish_usage_done_and_error() -> None:
    assert parse_chunk(_chunk("Hello")).content == "Hello"
    stop = parse_chunk(_chunk(finish="stop"))
    assert (stop.content, stop.finish_reason, stop.done) == ("", "stop", False)
    usage = parse_chunk(_chunk(usage={"prompt_tokens": 12, "completion_tokens": 5}))
    assert (usage.prompt_tokens, usage.completion_tokens) == (12, 5)
    assert parse_chunk(" [DONE]").done
    assert parse_chunk('{"choices":[{"delta":{"role":"assistant","content":null}}]}').content == ""
    with pytest.raises(RuntimeError, match="context length"):
        parse_chunk('{"error": {"message": "context length exceeded"}}')
    with pytest.raises(ValueError):
        parse_chunk("{not json")


# --- prompt ------------------------------------------------------------------------------------------

HIT = Hit(
    FaqEntry("What is the annual fee?", "No annual fee, ever.", "acme-card.md#what-is-the-annual-fee"), 0.9
)


def test_system_prompt_carries_persona_company_facts_and_refusal() -> None:
    text = system_prompt("a cheerful bank assistant", "Alex", "Acme Bank", [HIT], "I can ask a colleague.")
    assert "You are Alex, a cheerful bank assistant" in text
    assert "on behalf of Acme Bank" in text
    assert "- Q: What is the annual fee?\n  A: No annual fee, ever." in text
    assert "ONLY the facts below" in text and '"I can ask a colleague."' in text
    assert "- (none)" in system_prompt("", "Alex", "Acme Bank", [], "x")
    assert "a friendly, concise phone assistant" in system_prompt("", "Alex", "Acme Bank", [], "x")


def test_messages_map_history_roles_and_append_the_question_once() -> None:
    history = [
        ChatTurn(role="bot", text="Hello, this is Alex."),
        ChatTurn(role="customer", text="Hi."),
        ChatTurn(role="customer", text=" "),
        ChatTurn(role="bot", text="Any questions?"),
    ]
    kwargs = dict(persona="", agent="Alex", company="Acme Bank", hits=[HIT], no_answer="x")
    messages = build_messages("What's the fee?", history, **kwargs)
    assert [m["role"] for m in messages] == ["system", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"] == "What's the fee?"
    again = build_messages(
        "What's the fee?", [*history, ChatTurn(role="customer", text="What's the fee?")], **kwargs
    )
    assert len(again) == len(messages)
