"""End of turn: is the customer done speaking, or only pausing mid-phrase?

Telephony ends an utterance after a short silence, so a finished phrase is answered quickly; a pause
inside a phrase ("I'd like to know … about the annual fee") then also ends one. `judge` reads the
transcript so far (Whisper's punctuation, a dangling last word, an unfinished pattern) and `TurnGate`
holds an unfinished one for a longer silence, joining what the customer says next into the same turn.
Pure: times come in as wall-clock microseconds, the caller owns the timer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class Completeness(StrEnum):
    COMPLETE = "complete"  # answer now
    UNSURE = "unsure"  # wait a little
    INCOMPLETE = "incomplete"  # wait longer: the phrase is not finished


@dataclass(frozen=True, slots=True)
class Verdict:
    completeness: Completeness
    reason: str


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


FILLERS = _set("um umm uh uhh uhm er erm hmm hm mm mmm ah eh well so like")
CONJUNCTIONS = _set("and but or nor because cause if than unless whether although plus")
DETERMINERS = _set("the a an my your our their its his some any every another")
PREPOSITIONS = _set("to of for about with at from by into onto towards through without per")
HESITATIONS = _set("um umm uh uhh uhm er erm hmm hm ah eh")
# A phrase that ends on one of these words is not finished ("and I", "I just", "I mean", "what's").
DANGLING = (
    CONJUNCTIONS
    | DETERMINERS
    | PREPOSITIONS
    | HESITATIONS
    | _set("i we just also mean what's whats how's hows where's wheres who's whos")
)
# Ambiguous as a last word ("I'm interested in" / "Count me in"): wait a little, not long.
WEAK_DANGLING = _set("in on like very actually basically")
# Copulas and auxiliaries end a phrase only after a pronoun: "Yes it is." / "My number is …".
AUXILIARIES = _set(
    "is are was were am be been being do does did have has had can could would will should shall may "
    "might must isn't aren't wasn't don't doesn't didn't haven't hasn't can't couldn't wouldn't won't "
    "i'm i'd i'll i've"
)
PRONOUNS = _set("i you it we they he she that this there one yes no not so")
UNFINISHED = re.compile(
    r"(?:"
    r"\b(?:i|we|i'd|we'd|i'm|we're)\s+(?:would\s+|just\s+|really\s+|also\s+|was\s+|am\s+)?"
    r"(?:like|want|wanted|need|needed|wonder|wondering|think|thinking|hope|hoping|mean|meant|believe)"
    r"|\bi\s+(?:don't|do\s+not)\s+think"
    r"|\b(?:want|wanted|like|need|needed|going|trying|hoping|meant|wondering)\s+to\s+"
    r"(?:know|ask|say|see|find\s+out|tell\s+you|hear|understand)"
    r"|\b(?:tell|give|show|send|ask|remind)\s+(?:me|us)"
    r"|\b(?:no\s+)?wait|\bhold\s+on|\bhang\s+on|\blet\s+me\s+(?:think|see|check|find)"
    r"|\bone\s+(?:moment|second|sec)|\bjust\s+a\s+(?:moment|second|sec)"
    r"|\band\s+(?:then|so|also)"
    r"|(?<!think\s)(?<!hope\s)(?<!guess\s)(?<!believe\s)(?<!suppose\s)(?<!say\s)(?<!not\s)\bso"
    r")$"
)
# "Mm-hmm", "uh-huh": a whole answer (yes, go on), not a hesitation.
BACKCHANNEL = re.compile(r"^(?:m+-?hm+|mm+ hm+|uh-? ?huh|yeah yeah)$")
# "If I cancel within a month" waits for what happens then.
CONDITION = re.compile(r"^(?:(?:and|but|so|or|well|now)\s+)?(?:if|unless|whether|in\s+case)\b")
# One-word phrases that are whole answers; any other single word is a fragment.
SHORT_ANSWERS = _set(
    "yes no yeah yep yup nope nah okay ok sure fine right correct thanks bye goodbye hello hi hey maybe "
    "absolutely definitely great perfect please exactly alright sorry pardon what why when where who how "
    "true false never always agreed done cool nice"
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower().replace("’", "'"))


def judge(text: str) -> Verdict:
    """How finished the transcript reads; lexical cues win over Whisper's final punctuation."""
    stripped = text.strip()
    words = _words(stripped)
    if not words:
        return Verdict(Completeness.UNSURE, "no words")
    if stripped.endswith(("...", "…", ",", "-", "—", ":", ";")):
        return Verdict(Completeness.INCOMPLETE, "trailing punctuation")
    if BACKCHANNEL.match(stripped.lower().rstrip(".!?")):
        return Verdict(Completeness.COMPLETE, "backchannel")
    if all(w in FILLERS for w in words):
        return Verdict(Completeness.INCOMPLETE, "only fillers")
    last = words[-1]
    before = words[-2] if len(words) > 1 else ""
    if last in DANGLING:
        return Verdict(Completeness.INCOMPLETE, f"ends on '{last}'")
    if last in AUXILIARIES and before not in PRONOUNS:
        return Verdict(Completeness.INCOMPLETE, f"ends on '{last}'")
    if UNFINISHED.search(" ".join(words)):
        return Verdict(Completeness.INCOMPLETE, "unfinished phrase")
    sentence = re.split(r"(?<=[.?!])\s+", stripped)[-1]
    if CONDITION.match(" ".join(_words(sentence))) and "," not in sentence and not sentence.endswith("?"):
        return Verdict(Completeness.INCOMPLETE, "condition without its main clause")
    if last in WEAK_DANGLING:
        return Verdict(Completeness.UNSURE, f"ends on '{last}'")
    if stripped.endswith(("?", "!")):
        return Verdict(Completeness.COMPLETE, "question or exclamation")
    if len(words) == 1 and last not in SHORT_ANSWERS:
        return Verdict(Completeness.UNSURE, "one-word fragment")
    if not stripped.endswith((".", "?", "!")):
        return Verdict(Completeness.UNSURE, "no final punctuation")
    return Verdict(Completeness.COMPLETE, "sentence")


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """Silence to wait after each kind of phrase, counted from the end of its speech."""

    semantic: bool = True  # False: every transcript is a turn (fixed VAD silence only)
    hold_unsure_ms: int = 1200
    hold_incomplete_ms: int = 1500
    resume_wait_ms: int = 8000  # held text waits this long for the transcript of resumed speech
    max_parts: int = 4  # utterances joined into one turn at most


@dataclass(frozen=True, slots=True)
class Turn:
    """The customer's turn is over: answer `text` (the joined parts), as utterance `utterance_id`."""

    text: str
    utterance_id: str  # the last part's, so a replay of it is recognised by the policy too
    parts: int
    speech_end_us: int
    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Not yet: ask again (`TurnGate.on_timer`) at `until_us` unless something arrives before."""

    until_us: int
    reason: str


Decision = Turn | Hold | None


@dataclass(slots=True)
class _Part:
    utterance_id: str
    text: str
    speech_end_us: int


def join(texts: list[str]) -> str:
    """One sentence from the parts: Whisper's "..." at a pause is not part of what was said."""
    kept = [t.strip() for t in texts if t.strip()]
    out = [re.sub(r"\s*(?:\.\.\.|…)$", "", t) for t in kept[:-1]] + kept[-1:]
    return " ".join(t for t in out if t)


@dataclass
class TurnGate:
    """Turn-taking state of one call: transcripts and speech onsets in, `Turn` or `Hold` out.

    A phrase that reads complete is a turn at once; an unsure or unfinished one is held until its
    silence reaches the hold for its kind. Speech that starts again while a phrase is held (or before
    its transcript even arrives) keeps it held until the next transcript, which is joined to it.
    """

    config: TurnConfig = field(default_factory=TurnConfig)
    _parts: list[_Part] = field(default_factory=list, init=False)
    _seen: set[str] = field(default_factory=set, init=False)
    _last_onset_us: int = field(default=0, init=False)
    _deadline_us: int | None = field(default=None, init=False)

    @property
    def held(self) -> bool:
        return bool(self._parts)

    @property
    def deadline_us(self) -> int | None:
        return self._deadline_us

    def on_transcript(
        self, utterance_id: str, text: str, speech_start_us: int, speech_end_us: int, now_us: int
    ) -> Decision:
        """A transcript arrived; a replayed utterance id changes nothing (None)."""
        if utterance_id in self._seen:
            return None
        self._seen.add(utterance_id)
        end_us = speech_end_us if speech_end_us > 0 else now_us  # no timing given: count from arrival
        self._parts.append(_Part(utterance_id, text, end_us))
        cfg = self.config
        if not cfg.semantic:
            return self._release("fixed silence")
        if len(self._parts) >= cfg.max_parts:
            return self._release("max parts")
        if self._last_onset_us > end_us:
            return self._hold(self._last_onset_us + cfg.resume_wait_ms * 1000, "speaking again")
        verdict = judge(join([p.text for p in self._parts]))
        hold_ms = {
            Completeness.COMPLETE: 0,
            Completeness.UNSURE: cfg.hold_unsure_ms,
            Completeness.INCOMPLETE: cfg.hold_incomplete_ms,
        }[verdict.completeness]
        until = end_us + hold_ms * 1000
        if until <= now_us:
            return self._release(f"{verdict.completeness}: {verdict.reason}")
        return self._hold(until, f"{verdict.completeness}: {verdict.reason}")

    def on_speech_started(self, speech_start_us: int, now_us: int) -> Decision:
        """The customer started speaking: a held phrase waits for what they are saying now."""
        if not self.config.semantic:
            return None
        self._last_onset_us = max(self._last_onset_us, speech_start_us)
        if self._parts and speech_start_us > self._parts[-1].speech_end_us:
            return self._hold(speech_start_us + self.config.resume_wait_ms * 1000, "speaking again")
        return None

    def on_timer(self, now_us: int) -> Decision:
        """The hold may be over: a `Turn` once its deadline has passed, else the current `Hold`."""
        if not self._parts or self._deadline_us is None:
            return None
        if now_us < self._deadline_us:
            return Hold(self._deadline_us, "not yet")
        return self._release("hold expired")

    def flush(self) -> Turn | None:
        """Whatever is held, as a turn now (the service is stopping: answer rather than drop it)."""
        return self._release("flushed") if self._parts else None

    def _hold(self, until_us: int, reason: str) -> Hold:
        self._deadline_us = until_us
        return Hold(until_us, reason)

    def _release(self, reason: str) -> Turn:
        parts, self._parts, self._deadline_us = self._parts, [], None
        return Turn(
            text=join([p.text for p in parts]),
            utterance_id=parts[-1].utterance_id,
            parts=len(parts),
            speech_end_us=parts[-1].speech_end_us,
            reason=reason,
        )
