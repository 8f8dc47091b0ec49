"""The chat prompt for a generative model: persona, company, the retrieved FAQ entries, the conversation."""

from __future__ import annotations

from collections.abc import Sequence

from services.llm.knowledge import Hit
from voicebot.events import ChatTurn

DEFAULT_PERSONA = "a friendly, concise phone assistant"
ROLES = {"customer": "user", "bot": "assistant"}


def system_prompt(persona: str, agent: str, company: str, hits: Sequence[Hit], no_answer: str) -> str:
    facts = "\n".join(f"- Q: {h.entry.question}\n  A: {h.entry.answer}" for h in hits) or "- (none)"
    return (
        f"You are {agent}, {persona or DEFAULT_PERSONA}, speaking on a phone call on behalf of {company}.\n"
        "Answer the customer's last question using ONLY the facts below. Reply in one to three short spoken "
        "sentences: plain words, no lists, no markdown, numbers written the way they are spoken.\n"
        "If the facts do not answer the question, do not guess: say that you do not know and offer that a "
        f'colleague calls back, for example: "{no_answer}"\n'
        "Never promise approval, rates or anything not stated in the facts.\n\n"
        f"Facts from the {company} knowledge base:\n{facts}"
    )


def build_messages(
    question: str,
    history: Sequence[ChatTurn],
    *,
    persona: str,
    agent: str,
    company: str,
    hits: Sequence[Hit],
    no_answer: str,
) -> list[dict[str, str]]:
    """OpenAI chat messages; the question is appended unless the history already ends with it."""
    messages = [{"role": "system", "content": system_prompt(persona, agent, company, hits, no_answer)}]
    for turn in history:
        if turn.text.strip():
            messages.append({"role": ROLES.get(turn.role, "user"), "content": turn.text.strip()})
    last = messages[-1]
    if question.strip() and not (last["role"] == "user" and last["content"] == question.strip()):
        messages.append({"role": "user", "content": question.strip()})
    return messages
