"""End-of-turn evaluation on recorded utterances with pauses inside them (test and bench share it).

Each utterance of `tests/data/turn_utterances.yaml` is one customer turn, rendered with real voices.
It goes through what the call path does: a media worker's `UtteranceDetector` (Silero VAD and the
`Endpointer`) cuts it into utterances and speech onsets frame by frame, each utterance is transcribed
by the recognizer passed in (the asr service's faster-whisper; timed), and a `TurnGate` decides on the
timeline of arrivals. Per utterance: turns the gate gave before the true end (false cut-ins) and the
silence between the true end of speech and the turn-end decision (dead air), with the measured ASR
time and with an instant ASR.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from services.dialogue.turns import Turn, TurnConfig, TurnGate
from voicebot import corpus, vad
from voicebot.config import REPO_ROOT

CORPUS = REPO_ROOT / "tests" / "data" / "turn_utterances.yaml"
LEAD_MS = 500  # line noise before the customer speaks
TAIL_MS = 3000  # and after: longer than any policy waits
HOP_US = 10_000  # one bus hop (README: p50 ~7-10 ms per hop on the local broker)

# 16 kHz PCM -> (transcript, processing seconds)
Transcriber = Callable[[bytes], tuple[str, float]]


@dataclass(frozen=True, slots=True)
class Spoken:
    """One turn of the corpus: text parts and pauses (ms) between them."""

    id: str
    say: tuple[str | int, ...]
    voice: str
    rate: float
    noise_dbfs: float = -50.0

    @property
    def pauses(self) -> int:
        return sum(1 for p in self.say if isinstance(p, int))


@dataclass(frozen=True, slots=True)
class Rendered:
    spoken: Spoken
    pcm: bytes
    speech_end_us: int  # true end of the turn (end of the last spoken part), from the audio's start


@dataclass(frozen=True, slots=True)
class Policy:
    """How the call path ends a turn: telephony's VAD silence, then the dialogue gate."""

    name: str
    silence_stop_ms: int
    turn: TurnConfig = field(default_factory=TurnConfig)
    use_onsets: bool = True  # the gate hears SPEECH_STARTED


@dataclass(slots=True)
class Outcome:
    """What one policy did with one utterance."""

    id: str
    turns: list[tuple[int, Turn]]  # (decision time us, turn), in order
    true_end_us: int
    segments: int

    @property
    def false_cut_ins(self) -> int:
        """Turns given before the last one: each answered part of a phrase the customer had not finished."""
        return max(0, len(self.turns) - 1)

    @property
    def dead_air_s(self) -> float | None:
        if not self.turns:
            return None
        return (self.turns[-1][0] - self.true_end_us) / 1e6


def load(path: Path = CORPUS) -> list[Spoken]:
    data = yaml.safe_load(path.read_text())
    return [
        Spoken(
            id=u["id"],
            say=tuple(u["say"]),
            voice=u["voice"],
            rate=float(u["rate"]),
            noise_dbfs=float(u.get("noise_dbfs", -50.0)),
        )
        for u in data["utterances"]
    ]


def _trim(pcm: bytes, floor: int = 300, window: int = 160) -> bytes:
    """Cut a voice's own leading and trailing silence, so the pauses are exactly as written."""
    x = np.frombuffer(pcm, dtype="<i2")
    n = len(x) // window
    if n == 0:
        return pcm
    loud = np.abs(x[: n * window].reshape(n, window)).max(axis=1) > floor
    idx = np.flatnonzero(loud)
    if idx.size == 0:
        return pcm
    return x[idx[0] * window : (idx[-1] + 1) * window].tobytes()


def _voice(text: str, voice: str, rate: float) -> bytes:
    if voice == "piper":
        return corpus.piper(text, length_scale=rate)
    return corpus.espeak(text, voice=voice, wpm=int(rate))


def render(spoken: Spoken, seed: int = 0) -> Rendered:
    pieces = [corpus.silence(LEAD_MS)]
    for part in spoken.say:
        pieces.append(
            corpus.silence(part) if isinstance(part, int) else _trim(_voice(part, spoken.voice, spoken.rate))
        )
    speech = b"".join(pieces)
    end_us = int(corpus.duration_ms(speech) * 1000)
    pcm = corpus.mix_noise(speech + corpus.silence(TAIL_MS), dbfs=spoken.noise_dbfs, seed=seed)
    return Rendered(spoken, pcm, end_us)


@dataclass(frozen=True, slots=True)
class Segment:
    """One end-pointed utterance and when telephony published it."""

    utterance: vad.Utterance
    published_us: int


FRAME_MS = 20  # what the SIP leg delivers


def endpoint(
    pcm: bytes, silence_stop_ms: int, min_speech_ms: int = 200
) -> tuple[list[tuple[int, int]], list[Segment]]:
    """Speech onsets (published at, speech start) and utterances, as a media worker publishes them."""
    detector = vad.UtteranceDetector(
        vad.Endpointer(min_speech_ms=min_speech_ms, silence_stop_ms=silence_stop_ms)
    )
    step = vad.SAMPLE_RATE * FRAME_MS // 1000 * 2
    onsets: list[tuple[int, int]] = []
    segments: list[Segment] = []
    at = 0
    for i in range(0, len(pcm) - step + 1, step):
        at += FRAME_MS * 1000
        was = detector.endpointer.in_speech
        done = detector.push(pcm[i : i + step], at)
        if not was and detector.endpointer.in_speech:
            onsets.append((at, detector.endpointer.speech_start_us))
        segments.extend(Segment(u, at) for u in done)
    segments.extend(Segment(u, at) for u in detector.flush())
    return onsets, segments


def simulate(
    policy: Policy,
    onsets: list[tuple[int, int]],
    segments: list[Segment],
    transcripts: list[tuple[str, float]],
    true_end_us: int,
    uid: str,
    with_asr: bool = True,
) -> Outcome:
    """Replay the arrivals at dialogue (onsets one hop after telephony, transcripts after ASR in turn)."""
    events: list[tuple[int, int, tuple]] = []
    if policy.use_onsets:
        events += [(at + HOP_US, 0, ("onset", start)) for at, start in onsets]
    asr_free = 0
    for n, (seg, (text, asr_s)) in enumerate(zip(segments, transcripts, strict=True)):
        done = max(seg.published_us + HOP_US, asr_free) + (int(asr_s * 1e6) if with_asr else 0)
        asr_free = done
        u = seg.utterance
        events.append(
            (done + HOP_US, 1, ("transcript", f"{uid}-{n}", text, u.speech_start_us, u.speech_end_us))
        )
    events.sort(key=lambda e: (e[0], e[1]))
    gate = TurnGate(policy.turn)
    turns: list[tuple[int, Turn]] = []

    def settle(at: int, decision: object) -> None:
        if isinstance(decision, Turn):
            turns.append((at, decision))

    for at, _, ev in events:
        while gate.deadline_us is not None and gate.deadline_us <= at:
            deadline = gate.deadline_us
            settle(deadline, gate.on_timer(deadline))
        if ev[0] == "onset":
            settle(at, gate.on_speech_started(ev[1], at))
        else:
            settle(at, gate.on_transcript(ev[1], ev[2], ev[3], ev[4], at))
    if gate.deadline_us is not None:
        deadline = gate.deadline_us
        settle(deadline, gate.on_timer(deadline))
    return Outcome(uid, turns, true_end_us, len(segments))


@dataclass
class Evaluation:
    """Every policy on every utterance; ASR runs once per distinct audio segment."""

    transcribe: Transcriber
    asr_seconds: list[float] = field(default_factory=list)
    _cache: dict[str, tuple[str, float]] = field(default_factory=dict)

    def _transcript(self, pcm: bytes) -> tuple[str, float]:
        key = hashlib.sha1(pcm).hexdigest()
        if key not in self._cache:
            self._cache[key] = self.transcribe(pcm)
            self.asr_seconds.append(self._cache[key][1])
        return self._cache[key]

    def run(
        self, utterances: Iterable[Rendered], policies: list[Policy], time_fixed: bool = True
    ) -> dict[tuple[str, bool], list[Outcome]]:
        """(policy name, with ASR time) -> one outcome per utterance.

        A fixed silence never reads the text: `time_fixed=False` skips its ASR runs (a third of the
        time) and gives its instant-ASR outcomes only.
        """
        runs = {
            (p.name, asr)
            for p in policies
            for asr in (True, False)
            if asr is False or time_fixed or p.turn.semantic
        }
        results: dict[tuple[str, bool], list[Outcome]] = {key: [] for key in sorted(runs)}
        for r in utterances:
            cut: dict[int, tuple[list[tuple[int, int]], list[Segment]]] = {}
            for p in policies:
                if p.silence_stop_ms not in cut:
                    cut[p.silence_stop_ms] = endpoint(r.pcm, p.silence_stop_ms)
                onsets, segments = cut[p.silence_stop_ms]
                timed = (p.name, True) in runs
                texts = [self._transcript(s.utterance.pcm) if timed else ("", 0.0) for s in segments]
                for asr in (True, False):
                    if (p.name, asr) in runs:
                        results[(p.name, asr)].append(
                            simulate(p, onsets, segments, texts, r.speech_end_us, r.spoken.id, with_asr=asr)
                        )
        return results


def default_policies(semantic: TurnConfig | None = None, silence_stop_ms: int = 300) -> list[Policy]:
    """The gate at a short telephony silence against fixed-silence baselines (no semantic check)."""
    fixed = TurnConfig(semantic=False)
    return [
        Policy("fixed 300 ms", 300, fixed),
        Policy("fixed 400 ms", 400, fixed),
        Policy("fixed 1000 ms", 1000, fixed),
        Policy(f"semantic gate ({silence_stop_ms} ms VAD)", silence_stop_ms, semantic or TurnConfig()),
    ]
