"""Voice activity and end-pointing for the call media path.

Silero VAD runs through onnxruntime directly: the `silero_vad` package imports torch (~475 MB per
process), too much for dozens of media workers, so only its ONNX file is used (notes/models.md).
`Endpointer` is the pure state machine that turns per-chunk speech decisions into utterances.
"""

from __future__ import annotations

import importlib.util
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
CHUNK = 512  # samples per Silero decision at 16 kHz (32 ms)
CHUNK_MS = CHUNK * 1000 / SAMPLE_RATE
CONTEXT = 64  # samples of the previous chunk Silero expects in front of each chunk


def model_path() -> Path:
    """silero_vad/data/silero_vad.onnx, found without importing the package (it imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("silero-vad is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise RuntimeError(f"Silero model missing: {path}")
    return path


@cache
def _session():  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"])


def load_model() -> None:
    """Load the shared ONNX session once per process (at service start, not in the first call)."""
    _session()


class SileroVad:
    """Speech probability per 512-sample chunk for one audio stream (its own recurrent state)."""

    def __init__(self) -> None:
        self._session = _session()
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def probability(self, chunk: np.ndarray) -> float:
        if chunk.shape != (CHUNK,):
            raise ValueError(f"Silero needs {CHUNK} samples at 16 kHz, got {chunk.shape}")
        x = np.concatenate([self._context, chunk.astype(np.float32, copy=False)])[None, :]
        out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = x[0, -CONTEXT:]
        return float(out[0, 0])


@dataclass(slots=True)
class Utterance:
    """One end-pointed stretch of speech (or one part of a long one), 16-bit PCM."""

    pcm: bytes
    speech_start_us: int
    speech_end_us: int
    part: int
    last_part: bool


@dataclass(slots=True)
class _Chunk:
    pcm: bytes
    end_us: int
    speech: bool


@dataclass
class Endpointer:
    """Speech starts after `min_speech_ms` of speech; ends after `silence_stop_ms` of silence.

    Pure: fed (pcm, is_speech, end time) per chunk, it returns finished utterances. Speech longer than
    `max_utterance_s` is cut into parts (a Kafka message stays under 1 MB), the last with `last_part`.
    """

    sample_rate: int = SAMPLE_RATE
    min_speech_ms: int = 200
    silence_stop_ms: int = 400
    max_utterance_s: float = 25.0
    pre_roll_ms: int = 200
    tail_ms: int = 100
    gap_ms: int = 100  # silence tolerated inside the min_speech_ms run before it counts as noise

    _pre: deque[_Chunk] = field(default_factory=deque, init=False)
    _candidate: list[_Chunk] = field(default_factory=list, init=False)
    _buffer: list[_Chunk] = field(default_factory=list, init=False)
    _triggered: bool = field(default=False, init=False)
    _part: int = field(default=0, init=False)
    _start_us: int = field(default=0, init=False)

    @property
    def in_speech(self) -> bool:
        return self._triggered

    @property
    def speech_start_us(self) -> int:
        """Start of the utterance in progress (valid while `in_speech`)."""
        return self._start_us

    def _ms(self, pcm: bytes) -> float:
        return len(pcm) / 2 / self.sample_rate * 1000

    def _span_ms(self, chunks: list[_Chunk] | deque[_Chunk]) -> float:
        return sum(self._ms(c.pcm) for c in chunks)

    def _start_of(self, chunk: _Chunk) -> int:
        return chunk.end_us - int(self._ms(chunk.pcm) * 1000)

    def push(self, pcm: bytes, is_speech: bool, end_us: int) -> list[Utterance]:
        chunk = _Chunk(pcm, end_us, is_speech)
        if not self._triggered:
            return self._idle(chunk)
        self._buffer.append(chunk)
        trailing = self._trailing_silence_ms(self._buffer)
        if trailing >= self.silence_stop_ms:
            return [self._emit(last=True)]
        if self._span_ms(self._buffer) >= self.max_utterance_s * 1000:
            return [self._emit(last=False)]
        return []

    def flush(self) -> list[Utterance]:
        """The call ended: what was being said is an utterance too."""
        if self._triggered and any(c.speech for c in self._buffer):
            return [self._emit(last=True)]
        self._reset()
        return []

    def _idle(self, chunk: _Chunk) -> list[Utterance]:
        if chunk.speech:
            self._candidate.append(chunk)
        elif self._candidate:
            self._candidate.append(chunk)
            if self._trailing_silence_ms(self._candidate) > self.gap_ms:
                for c in self._candidate:
                    self._remember(c)
                self._candidate = []
        else:
            self._remember(chunk)
        speech_ms = sum(self._ms(c.pcm) for c in self._candidate if c.speech)
        if self._candidate and speech_ms >= self.min_speech_ms:
            self._triggered = True
            self._part = 0
            self._start_us = self._start_of(self._candidate[0])
            self._buffer = [*self._pre, *self._candidate]
            self._pre.clear()
            self._candidate = []
        return []

    def _remember(self, chunk: _Chunk) -> None:
        self._pre.append(chunk)
        while self._pre and self._span_ms(self._pre) > self.pre_roll_ms:
            self._pre.popleft()

    def _trailing_silence_ms(self, chunks: list[_Chunk]) -> float:
        total = 0.0
        for c in reversed(chunks):
            if c.speech:
                break
            total += self._ms(c.pcm)
        return total

    def _emit(self, last: bool) -> Utterance:
        chunks = self._buffer
        speech_idx = [i for i, c in enumerate(chunks) if c.speech]
        last_speech = chunks[speech_idx[-1]] if speech_idx else chunks[-1]
        if last:
            keep = (speech_idx[-1] + 1) if speech_idx else len(chunks)
            tail = 0.0
            while keep < len(chunks) and tail < self.tail_ms:
                tail += self._ms(chunks[keep].pcm)
                keep += 1
            chunks = chunks[:keep]
        utt = Utterance(
            pcm=b"".join(c.pcm for c in chunks),
            speech_start_us=self._start_us,
            speech_end_us=last_speech.end_us,
            part=self._part,
            last_part=last,
        )
        if last:
            self._reset()
        else:
            self._part += 1
            self._buffer = []
            self._start_us = chunks[-1].end_us
        return utt

    def _reset(self) -> None:
        self._triggered = False
        self._buffer = []
        self._candidate = []
        self._pre.clear()
        self._part = 0


class UtteranceDetector:
    """VAD + endpointer over a stream of 20 ms frames of one call (run on the event loop; ~130 µs/chunk).

    `on_chunk(pcm, is_speech, end_us)` sees every VAD decision as it is made (barge-in, voicemail
    detection), after the endpointer took it.
    """

    def __init__(
        self,
        endpointer: Endpointer,
        threshold: float = 0.5,
        on_chunk: Callable[[bytes, bool, int], None] | None = None,
    ) -> None:
        self.endpointer = endpointer
        self.threshold = threshold
        self.on_chunk = on_chunk
        self.vad = SileroVad()
        self._pending = bytearray()

    def push(self, pcm: bytes, received_us: int) -> list[Utterance]:
        """Feed one frame received at wall time `received_us` (the end of that frame)."""
        self._pending += pcm
        out: list[Utterance] = []
        step = CHUNK * 2
        while len(self._pending) >= step:
            chunk = bytes(self._pending[:step])
            del self._pending[:step]
            left_us = len(self._pending) // 2 * 1_000_000 // SAMPLE_RATE
            samples = np.frombuffer(chunk, dtype="<i2").astype(np.float32) / 32768.0
            speech = self.vad.probability(samples) >= self.threshold
            end_us = received_us - left_us
            out.extend(self.endpointer.push(chunk, speech, end_us))
            if self.on_chunk is not None:
                self.on_chunk(chunk, speech, end_us)
        return out

    def flush(self) -> list[Utterance]:
        return self.endpointer.flush()
