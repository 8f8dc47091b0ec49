"""PCM helpers shared by telephony, asr and tts: signed 16-bit little-endian mono everywhere on the bus."""

from __future__ import annotations

import numpy as np


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """High-quality resampling (soxr); a no-op when the rates already match."""
    if from_rate == to_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(samples.astype(np.float32, copy=False), from_rate, to_rate, quality="HQ")


def resample_pcm16(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    return float_to_pcm16(resample(pcm16_to_float(pcm), from_rate, to_rate))


def rms_dbfs(pcm: bytes) -> float:
    """Loudness of a PCM block in dBFS (-inf for digital silence)."""
    samples = pcm16_to_float(pcm)
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(samples * samples)))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def frames(pcm: bytes, frame_bytes: int) -> list[bytes]:
    """Split PCM into fixed-size frames, zero-padding the last one."""
    out = [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]
    if out and len(out[-1]) < frame_bytes:
        out[-1] = out[-1] + b"\x00" * (frame_bytes - len(out[-1]))
    return out
