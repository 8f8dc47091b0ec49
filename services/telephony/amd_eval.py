"""Answering-machine detection measured on rendered greetings (the corpus test and bench/amd_accuracy.py).

Each greeting (tests/data/amd_greetings.yaml) is rendered with real voices (voicebot.corpus), then played
through the worker's own media path: 20 ms frames into `vad.UtteranceDetector` (real Silero VAD, 512-sample
chunks), whose per-chunk decisions feed `AmdDetector` and `BeepDetector` exactly as the worker's
`on_chunk` does. The first end-pointed utterance can be transcribed (the caller passes a recognizer, so
this module does not import the asr service) to measure acoustic + transcript as well.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from services.telephony.amd import AmdConfig, AmdDetector, Answer, Beep, BeepDetector, Verdict, combine
from services.telephony.amd import transcript_cue as words_cue
from voicebot import corpus, vad

FRAME_MS = 20  # what the SIP media port delivers
Transcribe = Callable[[bytes, int], str]  # (pcm16, sample_rate) -> text


@dataclass(frozen=True, slots=True)
class Tone:
    hz: float
    ms: float
    gap_ms: float  # after the greeting


@dataclass(frozen=True, slots=True)
class Greeting:
    """What the answered leg plays: lead silence, the words (with pauses), maybe a beep, then silence."""

    id: str
    label: Answer
    say: tuple[str | float, ...]  # text, or a pause in ms
    voice: str = "en-us"
    wpm: int = 165
    pitch: int = 50
    length_scale: float = 1.0
    lead_ms: float = 400
    noise_dbfs: float = -55
    tail_ms: float = 2500
    beep: Tone | None = None
    hard: str = ""  # why this one is expected to be hard


def load_greetings(path: Path) -> list[Greeting]:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults = spec.get("defaults", {})
    out = []
    for raw in spec["greetings"]:
        g = {**defaults, **raw}
        say = g.pop("say")
        parts = tuple(
            float(p["pause_ms"]) if isinstance(p, dict) else str(p)
            for p in (say if isinstance(say, list) else [say])
        )
        beep = g.pop("beep", None)
        out.append(
            Greeting(
                **{**g, "label": Answer(g["label"])},
                say=parts,
                beep=Tone(float(beep["hz"]), float(beep["ms"]), float(beep["gap_ms"])) if beep else None,
            )
        )
    ids = [g.id for g in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate greeting ids in {path}")
    return out


def _words(g: Greeting) -> bytes:
    """Lead silence and the words, no noise (cached per voice and text)."""

    def speak(text: str) -> bytes:
        if g.voice == "piper":
            return corpus.piper(text, g.length_scale)
        return corpus.espeak(text, g.voice, g.wpm, g.pitch)

    return corpus.silence(g.lead_ms) + b"".join(
        corpus.silence(p) if isinstance(p, float) else speak(p) for p in g.say
    )


def render(g: Greeting) -> bytes:
    """16 kHz PCM of the answered leg from the moment of answer."""
    parts = [_words(g)]
    if g.beep is not None:
        parts += [corpus.silence(g.beep.gap_ms), corpus.tone(g.beep.hz, g.beep.ms)]
    parts.append(corpus.silence(g.tail_ms))
    return corpus.mix_noise(b"".join(parts), g.noise_dbfs, seed=sum(map(ord, g.id)))


def words_end_us(g: Greeting, before_us: int, floor_dbfs: float = -40.0) -> int:
    """When the last word heard before `before_us` ends (10 ms frames of the clean render), no VAD."""
    x = np.frombuffer(_words(g), dtype="<i2").astype(np.float64)
    step = vad.SAMPLE_RATE // 100
    frames = x[: len(x) // step * step].reshape(-1, step)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) >= 32768 * 10 ** (floor_dbfs / 20))
    loud = loud[(loud + 1) * 10_000 <= before_us]
    return int((loud[-1] + 1) * 10_000) if loud.size else 0


@dataclass(slots=True)
class Outcome:
    """One greeting through the detector; times in µs since answer."""

    greeting: Greeting
    first: Verdict  # the detector's first verdict
    acoustic: Verdict  # after a revision by a late beep, if any
    words_end_us: int = 0  # when the last word before the first verdict ends in the audio
    beeps: list[Beep] = field(default_factory=list)
    first_utterance_at_us: int | None = None  # when the endpointer handed it on
    transcript: str | None = None
    transcript_at_us: int | None = None  # end-pointed + recognised (bus hops not included)
    asr_s: float = 0.0  # recognition time of the first utterance on this machine
    cue: Verdict | None = None

    @property
    def combined(self) -> Verdict:
        return combine(self.acoustic, self.cue)

    def verdict(self, mode: str) -> Verdict:
        return {"first": self.first, "acoustic": self.acoustic}.get(mode) or self.combined


def detect(
    greeting: Greeting, config: AmdConfig, vad_threshold: float = 0.5
) -> tuple[Outcome, vad.Utterance | None]:
    """Play the greeting (answered at t=0) through VAD, endpointer, AMD and beep detection like the worker."""
    pcm = render(greeting)
    amd = AmdDetector(config, answered_us=0)
    beep = BeepDetector(config.beep)
    beeps: list[Beep] = []
    verdicts: list[Verdict] = []
    endpointer = vad.Endpointer()
    first: list[tuple[vad.Utterance, int]] = []

    def on_chunk(chunk: bytes, speech: bool, end_us: int) -> None:
        if (v := amd.push(chunk, speech, end_us)) is not None:
            verdicts.append(v)
        if (b := beep.push(chunk, end_us)) is not None:
            beeps.append(b)

    detector = vad.UtteranceDetector(endpointer, threshold=vad_threshold, on_chunk=on_chunk)
    # At least until the deadline has passed: a leg that ends earlier has no verdict to measure.
    need = int(vad.SAMPLE_RATE * (config.deadline_ms + 1000) / 1000) * 2
    if len(pcm) < need:
        pcm += corpus.noise((need - len(pcm)) / 2 / vad.SAMPLE_RATE * 1000, -55, seed=1)
    step = vad.SAMPLE_RATE * FRAME_MS // 1000 * 2
    for i in range(0, len(pcm) - step + 1, step):
        at_us = (i + step) // 2 * 1_000_000 // vad.SAMPLE_RATE
        for utt in detector.push(pcm[i : i + step], at_us):
            if not first:
                first.append((utt, at_us))
    if not first:
        first.extend((u, len(pcm) // 2 * 1_000_000 // vad.SAMPLE_RATE) for u in detector.flush()[:1])
    assert verdicts, "the deadline always decides"
    outcome = Outcome(
        greeting=greeting,
        first=verdicts[0],
        acoustic=verdicts[-1],
        beeps=beeps,
        first_utterance_at_us=first[0][1] if first else None,
    )
    outcome.words_end_us = words_end_us(greeting, outcome.first.decided_at_us)
    return outcome, (first[0][0] if first else None)


def evaluate(
    greetings: list[Greeting],
    config: AmdConfig | None = None,
    transcribe: Transcribe | None = None,
    vad_threshold: float = 0.5,
) -> Report:
    config = config or AmdConfig()
    outcomes = []
    for g in greetings:
        outcome, utterance = detect(g, config, vad_threshold)
        if transcribe is not None and utterance is not None:
            started = time.perf_counter()
            outcome.transcript = transcribe(utterance.pcm, vad.SAMPLE_RATE)
            outcome.asr_s = time.perf_counter() - started
            assert outcome.first_utterance_at_us is not None
            outcome.transcript_at_us = outcome.first_utterance_at_us + int(outcome.asr_s * 1e6)
            outcome.cue = words_cue(outcome.transcript, outcome.transcript_at_us)
        outcomes.append(outcome)
    return Report(outcomes, with_transcript=transcribe is not None)


@dataclass(slots=True)
class Report:
    outcomes: list[Outcome]
    with_transcript: bool

    @property
    def modes(self) -> list[str]:
        """first: the first verdict published; acoustic: after a late beep's revision; + transcript."""
        return ["first", "acoustic", *(["acoustic + transcript"] if self.with_transcript else [])]

    def confusion(self, mode: str = "acoustic") -> Counter[tuple[Answer, Answer]]:
        """(true label, verdict) -> count."""
        return Counter((o.greeting.label, o.verdict(mode).answer) for o in self.outcomes)

    def decided(self, mode: str = "acoustic") -> list[Outcome]:
        return [o for o in self.outcomes if o.verdict(mode).answer is not Answer.UNCERTAIN]

    def accuracy(self, mode: str = "acoustic", label: Answer | None = None) -> float:
        """Share correct among the decided (UNCERTAIN is not counted: the bot just speaks)."""
        decided = [o for o in self.decided(mode) if label is None or o.greeting.label is label]
        return sum(o.verdict(mode).answer is o.greeting.label for o in decided) / max(len(decided), 1)

    def errors(self, mode: str = "acoustic") -> list[Outcome]:
        return [o for o in self.decided(mode) if o.verdict(mode).answer is not o.greeting.label]

    def humans_called_machine(self, mode: str = "acoustic") -> list[Outcome]:
        return [o for o in self.errors(mode) if o.greeting.label is Answer.HUMAN]

    def seconds_to_verdict(self, mode: str, label: Answer, answer: Answer | None = None) -> list[float]:
        """Since answer, for greetings of `label` (that got `answer`, if given)."""
        return [
            o.verdict(mode).decided_at_us / 1e6
            for o in self.outcomes
            if o.greeting.label is label and (answer is None or o.verdict(mode).answer is answer)
        ]

    def seconds_after_words(self) -> list[float]:
        """First HUMAN verdicts: from the end of the greeting's last word (in the audio) to the verdict."""
        return [
            (o.first.decided_at_us - o.words_end_us) / 1e6
            for o in self.outcomes
            if o.first.answer is Answer.HUMAN
        ]

    def rows(self, mode: str = "acoustic") -> list[str]:
        """One line per greeting, for a failing test or the bench's detail."""
        out = []
        for o in self.outcomes:
            v = o.verdict(mode)
            mark = (
                "ok " if v.answer is o.greeting.label else ("?  " if v.answer is Answer.UNCERTAIN else "ERR")
            )
            words = f" | heard: {o.transcript!r}" if o.transcript is not None else ""
            out.append(
                f"{mark} {o.greeting.id} {o.greeting.label.value:>7} -> {v.answer.value:<9} at "
                f"{v.decided_at_us / 1e6:4.2f} s  {v.reason} ({v.detail}){words}"
            )
        return out
