"""The campaign knowledge base: FAQ markdown parsed into entries and searched by embedding similarity.

Pure: the embedding function is handed in, so parsing and ranking are tested without a model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Embed = Callable[[Sequence[str]], np.ndarray]  # texts → L2-normalised rows


@dataclass(frozen=True, slots=True)
class FaqEntry:
    question: str
    answer: str
    source: str  # "<file>#<slug>", quoted back as the reply's source


@dataclass(frozen=True, slots=True)
class Hit:
    entry: FaqEntry
    score: float


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def parse_faq(markdown: str, name: str = "faq") -> list[FaqEntry]:
    """`## question` headings, each followed by answer paragraphs; text before the first one is ignored."""
    entries: list[FaqEntry] = []
    question: str | None = None
    lines: list[str] = []

    def close() -> None:
        if question is None:
            return
        paragraphs = [" ".join(p.split()) for p in "\n".join(lines).split("\n\n")]
        answer = "\n\n".join(p for p in paragraphs if p)
        if question and answer:
            entries.append(FaqEntry(question, answer, f"{name}#{slug(question)}"))

    for line in markdown.splitlines():
        heading = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if heading:
            close()
            question, lines = (heading.group(2).strip() if len(heading.group(1)) == 2 else None), []
        elif question is not None:
            lines.append(line)
    close()
    return entries


class KnowledgeIndex:
    """One campaign's FAQ, embedded once: each entry scores as the better of its question alone and
    question + answer (a customer may ask in the answer's words: "is it free abroad?")."""

    def __init__(self, entries: Sequence[FaqEntry], embed: Embed) -> None:
        self.entries = list(entries)
        self._embed = embed
        if self.entries:
            self._questions = embed([e.question for e in self.entries])
            self._full = embed([f"{e.question} {e.answer}" for e in self.entries])

    def search(self, query: str, k: int = 1) -> list[Hit]:
        """Best `k` entries, best first, with cosine scores."""
        if not self.entries or not query.strip():
            return []
        q = self._embed([query])[0]
        scores = np.maximum(self._questions @ q, self._full @ q)
        order = np.argsort(-scores)[:k]
        return [Hit(self.entries[i], float(scores[i])) for i in order]
