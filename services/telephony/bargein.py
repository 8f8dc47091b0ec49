"""Barge-in: the customer talking over the bot, decided per 32 ms VAD chunk (pure).

At speech onset during playback the bot pauses at once (the caller hears it stop within ~100 ms);
speech that lasts `min_speech_ms` cuts the reply (the rest is dropped upstream); a shorter sound
("uh-huh", "ok", a cough, line noise) followed by `resume_after_ms` of silence resumes the reply where
it paused, and that sound is not a turn of its own. A pause costs nothing if it turns out to be a
backchannel, while waiting for proof before stopping would make every real interruption late.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Act(Enum):
    PAUSE = "pause"  # stop sending frames, keep them queued
    RESUME = "resume"  # it was a backchannel or noise: play on
    CUT = "cut"  # a real interruption: drop the reply


@dataclass(frozen=True, slots=True)
class Rule:
    enabled: bool = True
    onset_ms: int = 32  # speech needed to pause (one Silero chunk)
    min_speech_ms: int = 700  # espeak's "Mm-hmm." holds 640 ms of speech, a real question far more
    resume_after_ms: int = 250
    merge_gap_ms: int = 1000  # speech resuming this soon after a resume counts with what came before


@dataclass
class BargeIn:
    """Per call: fed every VAD chunk with whether bot audio is playing, returns what to do."""

    rule: Rule
    paused: bool = False
    onset_us: int = 0  # start of the speech that paused playback
    resumed_at_us: int = 0  # end of the last backchannel (its utterance is not a turn)
    _speech_ms: float = 0.0  # speech since `onset_us` (across short pauses: "Wait, ... how much is it?")
    _run_ms: float = 0.0  # consecutive speech before a pause
    run_onset_us: int = 0  # start of the speech run that paused playback (a breath later: the new run)
    _silence_ms: float = 0.0
    _cut_speech: bool = False  # the speech that cut a reply goes on: it cannot pause the next one

    def push(self, speech: bool, chunk_ms: float, end_us: int, playing: bool) -> Act | None:
        if not self.rule.enabled:
            return None
        if not self.paused:
            if not speech:
                self._cut_speech = False
            if not playing or not speech or self._cut_speech:
                self._run_ms = 0.0
                return None
            if self._run_ms == 0.0:
                self.run_onset_us = end_us - int(chunk_ms * 1000)
            self._run_ms += chunk_ms
            if self._run_ms < self.rule.onset_ms:
                return None
            self.paused = True
            self._silence_ms = 0.0
            gap_us = self.run_onset_us - self.resumed_at_us
            if self.resumed_at_us and gap_us <= self.rule.merge_gap_ms * 1000:
                self._speech_ms += self._run_ms  # the same interruption, after a breath
            else:
                self.onset_us, self._speech_ms = self.run_onset_us, self._run_ms
            if self._speech_ms >= self.rule.min_speech_ms:
                return self._cut()
            return Act.PAUSE
        if speech:
            self._speech_ms += chunk_ms
            self._silence_ms = 0.0
            if self._speech_ms >= self.rule.min_speech_ms:
                return self._cut()
            return None
        self._silence_ms += chunk_ms
        if self._silence_ms >= self.rule.resume_after_ms:
            self.paused = False
            self._run_ms = 0.0
            self.resumed_at_us = end_us
            return Act.RESUME
        return None

    def _cut(self) -> Act:
        self.paused = False
        self._run_ms = 0.0
        self._cut_speech = True
        return Act.CUT

    def is_backchannel(self, speech_start_us: int, speech_end_us: int) -> bool:
        """An utterance that ended by the time playback resumed was the sound that paused it."""
        return (
            bool(self.resumed_at_us)
            and speech_start_us >= self.onset_us - 100_000
            and (speech_end_us <= self.resumed_at_us)
        )
