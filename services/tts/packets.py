"""Pure TTS rules: how reply audio is cut into `TtsAudio` messages and numbered.

The telephony worker plays a turn's audio by `seq`, so `seq` keeps counting across every sentence
(every `ApprovedReply`) of the same turn; a call's replies share one partition, so one consumer numbers them.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_RATE = 16_000
MAX_PCM_BYTES = 500_000  # with the envelope, a message stays under ~512 KB


def first_clause_split(text: str, min_words: int = 3) -> list[str]:
    """Split a reply's first sentence at its first comma when both sides have `min_words` words.

    Piper synthesizes a whole sentence before it yields audio, so the first audio of a reply waits for
    the first sentence; a comma is already a pause, so speaking its clauses separately costs no prosody
    worth hearing and brings the first audio forward by the rest of the sentence.
    """
    head, sep, tail = text.partition(", ")
    if not sep or any(end in head for end in ".?!"):
        return [text]
    if len(head.split()) < min_words or len(tail.split()) < min_words:
        return [text]
    return [head + ",", tail]


def target_rate(requested: int) -> int:
    """The call's media rate; 0 (not told) means the bus default of 16 kHz."""
    return requested if requested > 0 else DEFAULT_RATE


def split_pcm(pcm: bytes, max_bytes: int = MAX_PCM_BYTES) -> list[bytes]:
    """Cut 16-bit PCM into pieces of at most `max_bytes`, never inside a sample."""
    step = max(2, max_bytes - max_bytes % 2)
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


class TurnSequencer:
    """Next `seq` per turn, 0, 1, 2… across all replies of that turn; remembers a bounded number of turns."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._next: OrderedDict[str, int] = OrderedDict()

    def next(self, turn_id: str) -> int:
        seq = self._next.pop(turn_id, 0)
        self._next[turn_id] = seq + 1
        if len(self._next) > self.capacity:
            self._next.popitem(last=False)
        return seq
