"""Sentence splitting of streamed text: each sentence is checked and spoken while the rest is generated."""

from __future__ import annotations

import re

# a full stop after these is not the end of a sentence
ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "inc", "ltd"}
    | {"corp", "approx", "dept", "mt", "u.s"}
)
_END = re.compile(r"""[.!?]+["'”’)\]]*(?=\s)|\n\s*\n""")


class SentenceSplitter:
    """Feed text deltas; get back each sentence once it is complete (its end mark and the space after it)."""

    def __init__(self) -> None:
        self._buf = ""

    def feed(self, delta: str) -> list[str]:
        self._buf += delta
        out: list[str] = []
        start = 0
        for m in _END.finditer(self._buf):
            if m.group(0)[0] == "." and not _is_full_stop(self._buf[start : m.start()]):
                continue
            sentence = " ".join(self._buf[start : m.end()].split())
            if sentence:
                out.append(sentence)
            start = m.end()
        self._buf = self._buf[start:]
        return out

    def flush(self) -> list[str]:
        """What is left when the stream ends, as a last sentence."""
        rest, self._buf = " ".join(self._buf.split()), ""
        return [rest] if rest else []


def _is_full_stop(before: str) -> bool:
    words = before.split()
    if not words:
        return False
    word = words[-1].lstrip("(\"'“").lower()
    # not after "Dr. Smith", "J. Smith", or a list item's "1."
    return not (
        word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()) or (len(words) == 1 and word.isdigit())
    )


def split_sentences(text: str) -> list[str]:
    splitter = SentenceSplitter()
    return splitter.feed(text) + splitter.flush()
