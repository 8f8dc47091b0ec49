"""Answering-machine detection: is the answered leg a person, a recorded greeting, or too early to say.

A person picks up, says "Hello?" (0.3-1.2 s) and waits for the caller; a recorded greeting talks on for
seconds with only short pauses and often ends in a beep. `AmdDetector` reads that from the per-chunk
speech decisions the media worker's Silero VAD already makes, and answers once, early for a person (the
bot must speak within about 2 s). `BeepDetector` finds the record tone, so a message can be left after
it; `transcript_cue` reads the first transcript for what only words tell ("leave a message").
Pure: no I/O, no clock; times are the caller's microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

SAMPLE_RATE = 16000


class Answer(StrEnum):
    """Names match `CallLifecycle.Amd` (HUMAN, MACHINE, UNCERTAIN)."""

    HUMAN = "human"
    MACHINE = "machine"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class Verdict:
    """`reason` is the stable name of the cue that decided (`amd_reason`); `detail` is for logs."""

    answer: Answer
    reason: str
    decided_at_us: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Beep:
    """A steady tone that stopped: a voicemail's record tone. Speak after `end_us`."""

    start_us: int
    end_us: int
    hz: float

    @property
    def ms(self) -> float:
        return (self.end_us - self.start_us) / 1000


@dataclass(frozen=True, slots=True)
class BeepConfig:
    """A record tone is one sine (350-2000 Hz) held >= 150 ms; speech spreads over harmonics and glides."""

    window: int = 512  # samples (32 ms): 31 Hz bins
    hop: int = 256
    min_hz: float = 350.0
    max_hz: float = 2000.0
    min_ms: float = 150.0
    min_concentration: float = 0.8  # share of the window's energy within +-2 bins of the peak
    min_dbfs: float = -45.0  # quieter than this is line noise
    max_drift_hz: float = 40.0  # from the tone's first window: a glide is not a beep


@dataclass(frozen=True, slots=True)
class AmdConfig:
    """Defaults follow the classic rules (Asterisk AMD: greeting 1.5 s, after-greeting silence 0.8 s),
    tuned on tests/data/amd_greetings.yaml so that a person is decided fast and rarely called a machine.
    """

    min_word_ms: int = 96  # a shorter speech run (click, breath, Silero blip) is not a word
    after_greeting_silence_ms: int = 640  # a person stops after "Hello?" and waits this long
    long_greeting_ms: int = 2000  # speech in one greeting (pauses excluded) only a recording keeps up
    max_phrases: int = 5  # phrases in one greeting, none followed by the pause a person leaves
    initial_silence_ms: int = 2500  # nobody spoke: let the bot speak first
    deadline_ms: int = 4000  # after answer: UNCERTAIN if still unsure
    beep_revision_ms: int = 10000  # a beep this soon after answer turns HUMAN/UNCERTAIN into MACHINE
    beep: BeepConfig = field(default_factory=BeepConfig)


class BeepDetector:
    """Finds steady single tones in a stream of 16 kHz PCM; keeps running after the verdict.

    `push` returns the beep once it has stopped (that is when a voicemail starts recording).
    """

    def __init__(self, config: BeepConfig | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        self.config = config or BeepConfig()
        self.sample_rate = sample_rate
        c = self.config
        self._taper = np.hanning(c.window)
        freqs = np.fft.rfftfreq(c.window, 1 / sample_rate)
        self._band = (freqs >= c.min_hz) & (freqs <= c.max_hz)
        self._bin_hz = sample_rate / c.window
        self._min_power = (32768 * 10 ** (c.min_dbfs / 20)) ** 2
        self._pending = np.zeros(0, dtype=np.float64)
        self._run_start_us: int | None = None
        self._run_end_us = 0
        self._run_hz: list[float] = []

    @property
    def tone_ms(self) -> float:
        """How long the tone sounding now has lasted (0 when none)."""
        return 0.0 if self._run_start_us is None else (self._run_end_us - self._run_start_us) / 1000

    @property
    def tone_hz(self) -> float:
        return self._run_hz[-1] if self._run_hz else 0.0

    def push(self, pcm: bytes, end_us: int) -> Beep | None:
        c = self.config
        self._pending = np.concatenate([self._pending, np.frombuffer(pcm, dtype="<i2").astype(np.float64)])
        found: Beep | None = None
        while len(self._pending) >= c.window:
            window = self._pending[: c.window]
            left = len(self._pending) - c.window  # samples after this window's end
            window_end_us = end_us - left * 1_000_000 // self.sample_rate
            beep = self._window(window, window_end_us)
            found = found or beep
            self._pending = self._pending[c.hop :]
        return found

    def _window(self, x: np.ndarray, end_us: int) -> Beep | None:
        c = self.config
        hz = self._tone_hz(x)
        # A window half covered by the tone may already pass: count each window as its middle hop.
        middle_us = end_us - c.window * 500_000 // self.sample_rate
        half_hop_us = c.hop * 500_000 // self.sample_rate
        if hz is not None and (self._run_start_us is None or abs(hz - self._run_hz[0]) <= c.max_drift_hz):
            if self._run_start_us is None:
                self._run_start_us = middle_us - half_hop_us
            self._run_end_us = middle_us + half_hop_us
            self._run_hz.append(hz)
            return None
        beep = None
        if self._run_start_us is not None and self.tone_ms >= c.min_ms:
            beep = Beep(self._run_start_us, self._run_end_us, round(float(np.median(self._run_hz)), 1))
        self._run_start_us, self._run_hz = None, []
        if hz is not None:  # a different tone starts here
            self._run_start_us, self._run_end_us = middle_us - half_hop_us, middle_us + half_hop_us
            self._run_hz = [hz]
        return beep

    def _tone_hz(self, x: np.ndarray) -> float | None:
        """The window's frequency when it holds one loud steady sine in the band, else None."""
        if float(np.mean(x * x)) < self._min_power:
            return None
        power = np.abs(np.fft.rfft(x * self._taper)) ** 2
        k = int(np.argmax(np.where(self._band, power, 0.0)))
        total = float(power[1:].sum())
        if total <= 0 or float(power[max(k - 2, 0) : k + 3].sum()) / total < self.config.min_concentration:
            return None
        a, b, g = np.log(power[k - 1 : k + 2] + 1e-12)  # parabolic peak: a few Hz, not a 31 Hz bin
        offset = 0.5 * (a - g) / (a - 2 * b + g) if (a - 2 * b + g) != 0 else 0.0
        return (k + offset) * self._bin_hz


class AmdDetector:
    """Streaming verdict for one answered leg, fed every VAD chunk: `push(pcm, is_speech, end_us)`.

    Returns the verdict on the chunk that decides it, else None. One revision may follow: a short
    recorded greeting ("Leave a message.") looks like a person's "Hello?" until its beep, so a beep
    within `beep_revision_ms` of answer turns an earlier HUMAN or UNCERTAIN into MACHINE. Times are
    microseconds on the caller's clock; `answered_us` is when the call was answered (default: the
    first chunk's start).
    """

    def __init__(self, config: AmdConfig | None = None, answered_us: int | None = None) -> None:
        self.config = config or AmdConfig()
        self.answered_us = answered_us
        self.verdict: Verdict | None = None
        self.beep = BeepDetector(self.config.beep)
        self.speech_ms = 0.0  # in words of the current greeting
        self.phrases = 0
        self.greeting_start_us: int | None = None
        self.last_speech_end_us: int | None = None
        self._run_start_us: int | None = None  # the speech run going on now, word or not yet
        self._in_word = False
        self._last_end_us = 0

    @property
    def done(self) -> bool:
        """Nothing can change any more: the worker may stop feeding it."""
        if self.verdict is None or self.answered_us is None:
            return False
        if self.verdict.answer is Answer.MACHINE:
            return True
        return self._last_end_us - self.answered_us > self.config.beep_revision_ms * 1000

    def push(self, pcm: bytes, is_speech: bool, end_us: int) -> Verdict | None:
        if self.done:
            return None
        start_us = end_us - len(pcm) // 2 * 1_000_000 // SAMPLE_RATE
        if self.answered_us is None:
            self.answered_us = start_us
        self._last_end_us = end_us
        self.beep.push(pcm, end_us)
        if self.verdict is not None:
            if self.beep.tone_ms < self.config.beep.min_ms:
                return None
            self.verdict = self._beep_verdict(end_us, f", after '{self.verdict.reason}'")
            return self.verdict
        self._track(is_speech, start_us, end_us)
        self.verdict = self._decide(end_us)
        return self.verdict

    def _beep_verdict(self, now_us: int, note: str = "") -> Verdict:
        detail = f"{self.beep.tone_hz:.0f} Hz tone for {self.beep.tone_ms:.0f} ms{note}"
        return Verdict(Answer.MACHINE, "beep", now_us, detail)

    def _track(self, is_speech: bool, start_us: int, end_us: int) -> None:
        c = self.config
        if not is_speech:
            self._run_start_us, self._in_word = None, False
            return
        if self._run_start_us is None:
            self._run_start_us = start_us
        if self._in_word:
            self.speech_ms += (end_us - start_us) / 1000
        elif end_us - self._run_start_us >= c.min_word_ms * 1000:
            self._in_word = True
            self.phrases += 1
            self.speech_ms += (end_us - self._run_start_us) / 1000
            if self.greeting_start_us is None:
                self.greeting_start_us = self._run_start_us
        if self._in_word:
            self.last_speech_end_us = end_us

    def _decide(self, now_us: int) -> Verdict | None:
        c = self.config
        assert self.answered_us is not None
        elapsed_ms = (now_us - self.answered_us) / 1000
        if self.beep.tone_ms >= c.beep.min_ms:
            return self._beep_verdict(now_us)
        if self.greeting_start_us is not None:
            if self.speech_ms >= c.long_greeting_ms:
                return Verdict(
                    Answer.MACHINE, "long greeting", now_us, f"{self.speech_ms / 1000:.1f} s of speech"
                )
            if self.phrases >= c.max_phrases:
                return Verdict(Answer.MACHINE, "many phrases", now_us, f"{self.phrases} phrases, no pause")
            assert self.last_speech_end_us is not None
            silence_ms = (now_us - self.last_speech_end_us) / 1000
            if not self._in_word and silence_ms >= c.after_greeting_silence_ms:
                return Verdict(
                    Answer.HUMAN,
                    "short greeting",
                    now_us,
                    f"{self.speech_ms / 1000:.1f} s of speech, then {silence_ms / 1000:.1f} s of silence",
                )
        elif elapsed_ms >= c.initial_silence_ms:
            return Verdict(Answer.UNCERTAIN, "no speech", now_us, f"silence for {elapsed_ms / 1000:.1f} s")
        if elapsed_ms >= c.deadline_ms:
            return Verdict(
                Answer.UNCERTAIN, "deadline", now_us, f"{self.speech_ms / 1000:.1f} s of speech, still going"
            )
        return None


# ---- words ------------------------------------------------------------------------------------------

_MACHINE_PHRASES = [
    r"\bleave\b(?:\W+\w+){0,3}?\W+(?:message|name|number|details)\b",  # leave (me) a (detailed) message
    r"\b(?:after|at) the (?:tone|beep)\b",
    r"\bvoice ?mail\b",
    r"\bmail ?box\b",
    r"\bmessaging (?:system|service)\b",
    r"\brecord (?:your|a) message\b",
    r"\b(?:can't|cannot|can not|unable to) (?:come to|get to|take|answer) (?:the phone|your call|the call)\b",
    r"\byou(?:'ve| have) reached\b",
    r"\bmissed your call\b",
    r"\bthe (?:number|person|subscriber|customer|party) you (?:are calling|have dialed|dialed|called)\b",
]
# Alone each could be a person ("she's not available, who's calling?"); two together are a recording.
_MACHINE_HINTS = [
    r"\b(?:not|isn't|is not|un)\s?available\b",
    r"\b(?:call|get back to) you(?: back)?\b",
    r"\b(?:is|are|we're|we are) closed\b",
    r"\btry again later\b",
    r"\bas soon as (?:possible|i can|we can)\b",
    r"\bthank you for calling\b",
    r"\breached\b",
]
# A live person addresses the caller; a recording does not ask who is there.
_HUMAN_PHRASES = [
    r"\bwho(?:'s|se| is| are) (?:calling|this|there|you|speaking)\b",  # whose: ASR homophone
    r"\b(?:can|may) i help\b",
    r"\bwhat can i do for you\b",
    r"\bhow can i help\b",
]


def _found(patterns: list[str], text: str) -> list[str]:
    return [m.group(0) for p in patterns if (m := re.search(p, text))]


def transcript_cue(text: str, at_us: int = 0) -> Verdict | None:
    """What the first transcript's words say, if anything: a voicemail phrase or a question to the caller."""
    text = re.sub(r"\s+", " ", text.lower().replace("’", "'"))
    if strong := _found(_MACHINE_PHRASES, text):
        return Verdict(Answer.MACHINE, "transcript", at_us, f"'{strong[0]}'")
    if human := _found(_HUMAN_PHRASES, text):
        return Verdict(Answer.HUMAN, "transcript", at_us, f"'{human[0]}'")
    if len(hints := _found(_MACHINE_HINTS, text)) >= 2:
        return Verdict(Answer.MACHINE, "transcript", at_us, " + ".join(f"'{h}'" for h in hints))
    return None


def combine(acoustic: Verdict, cue: Verdict | None) -> Verdict:
    """The verdict once the first transcript is in: its words win over timing, a beep wins over words."""
    if cue is None or cue.answer is acoustic.answer or acoustic.reason == "beep":
        return acoustic
    return cue
