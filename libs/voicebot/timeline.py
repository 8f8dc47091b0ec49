"""A turn's timeline (the envelope's marks) broken down into stages and bus hops.

Every service stamps `<service>.in` when it consumes and `<service>.out` when it publishes; telephony adds
`telephony.speech_end` (last customer speech frame) and `telephony.first_audio` (first bot frame on the SIP
leg). So a turn's latency splits without any service measuring anything itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from voicebot.events import Mark

SPEECH_END = "telephony.speech_end"
FIRST_AUDIO = "telephony.first_audio"


@dataclass(frozen=True, slots=True)
class Segment:
    name: str  # "asr", "endpointing", "bus asr→dialogue", ...
    kind: str  # "stage" or "bus"
    seconds: float


def segments(marks: Iterable[Mark]) -> list[Segment]:
    """Consecutive marks as named segments: `X.in→X.out` is stage X, `X.out→Y.in` is a bus hop."""
    ordered = list(marks)
    out: list[Segment] = []
    for a, b in itertools.pairwise(ordered):
        svc_a, _, what_a = a.stage.partition(".")
        svc_b, _, what_b = b.stage.partition(".")
        seconds = (b.at_us - a.at_us) / 1e6
        if a.stage == SPEECH_END:
            out.append(Segment("endpointing", "stage", seconds))
        elif b.stage == FIRST_AUDIO:
            out.append(Segment("playout", "stage", seconds))
        elif what_a == "out" and what_b == "in":
            out.append(Segment(f"bus {svc_a}→{svc_b}", "bus", seconds))
        elif svc_a == svc_b and what_a == "in" and what_b == "out":
            out.append(Segment(svc_a, "stage", seconds))
    return out


def voice_to_voice(marks: Iterable[Mark]) -> float | None:
    """End of customer speech → first bot audio on the SIP leg, in seconds (None if not a reply turn)."""
    at = {}
    for m in marks:
        at.setdefault(m.stage, m.at_us)
    if SPEECH_END not in at or FIRST_AUDIO not in at:
        return None
    return (at[FIRST_AUDIO] - at[SPEECH_END]) / 1e6


def truncate_at_first_audio(marks: Iterable[Mark]) -> list[Mark]:
    """Marks up to and including the first bot audio (later marks belong to the lifecycle event itself)."""
    out = []
    for m in marks:
        out.append(m)
        if m.stage == FIRST_AUDIO:
            break
    return out
