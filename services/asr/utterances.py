"""Pure ASR rules: joining the parts of a long utterance and turning Whisper's scores into a confidence.

Telephony splits speech longer than ~25 s into parts (a Kafka message stays under 1 MB); the parts of
one call land on one partition, in order, so one consumer sees them all and joins them here.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass

from voicebot.events import AudioUtterance


@dataclass(slots=True)
class Speech:
    """One whole utterance, ready to transcribe."""

    utterance_id: str
    pcm: bytes
    sample_rate: int
    speech_start_us: int
    speech_end_us: int


class PartAssembler:
    """Collects parts until `last_part`; a single-part utterance (part 0, last_part) passes straight through.

    Bounded, so a lost last part cannot grow memory without limit.
    """

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._open: OrderedDict[str, list[AudioUtterance]] = OrderedDict()

    def add(self, part: AudioUtterance) -> Speech | None:
        """The whole utterance once its last part arrived, else None."""
        parts = self._open.pop(part.utterance_id, [])
        if not any(p.part == part.part for p in parts):
            parts.append(part)
        if not part.last_part:
            self._open[part.utterance_id] = parts
            while len(self._open) > self.capacity:
                self._open.popitem(last=False)
            return None
        parts.sort(key=lambda p: p.part)
        rate = parts[0].sample_rate
        if any(p.sample_rate != rate for p in parts):
            raise ValueError(f"utterance {part.utterance_id} mixes sample rates")
        return Speech(
            utterance_id=part.utterance_id,
            pcm=b"".join(p.pcm for p in parts),
            sample_rate=rate,
            speech_start_us=parts[0].speech_start_us,
            speech_end_us=parts[-1].speech_end_us,
        )

    def __len__(self) -> int:
        return len(self._open)


def confidence(avg_logprobs: list[float], token_counts: list[int]) -> float:
    """Token-weighted mean log-probability mapped to 0..1 (exp), 0 when nothing was recognised."""
    total = sum(token_counts)
    if total <= 0 or not avg_logprobs:
        return 0.0
    mean = sum(lp * n for lp, n in zip(avg_logprobs, token_counts, strict=True)) / total
    return max(0.0, min(1.0, math.exp(mean)))


_SPACES = re.compile(r"\s+")


def clean_text(segments: list[str]) -> str:
    """Join Whisper segments into one line of text without stray whitespace."""
    return _SPACES.sub(" ", " ".join(s.strip() for s in segments)).strip()
