"""Voice activity and end-pointing for the call media path.

Silero VAD runs through onnxruntime directly: the `silero_vad` package imports torch (~475 MB per
process), too much for dozens of media workers, so only its ONNX file is used (notes/models.md).
`Endpointer` is the pure state machine that turns per-chunk speech decisions into utterances.
"""

from __future__ import annotations

import importlib.util
from collections import deque
from collections.abc import Callable, Iterable, Sequence
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
        self.reset()

    def reset(self) -> None:
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)

    def probability(self, chunk: np.ndarray) -> float:
        if chunk.shape != (CHUNK,):
            raise ValueError(f"Silero needs {CHUNK} samples at 16 kHz, got {chunk.shape}")
        return float(probabilities([self], chunk[None, :])[0])


_SR = np.array(SAMPLE_RATE, dtype=np.int64)


def probabilities(streams: Sequence[SileroVad], chunks: np.ndarray) -> np.ndarray:
    """The next chunk of each stream (row i of `chunks`, float32 in [-1, 1]) in one ONNX run.

    Silero's rows are independent, so one run over a media worker's calls gives each the same answer
    as its own run, at about half the cost per stream (an ONNX run has a large fixed cost).
    """
    context = np.stack([s.context for s in streams])
    x = np.concatenate([context, chunks.astype(np.float32, copy=False)], axis=1)
    state = np.concatenate([s.state for s in streams], axis=1)
    out, state = _session().run(None, {"input": x, "state": state, "sr": _SR})
    for i, stream in enumerate(streams):
        stream.state = state[:, i : i + 1]
        stream.context = x[i, -CONTEXT:]
    return out[:, 0]


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
    Running totals keep a push O(1) however long the utterance (it runs 31 times a second per call).
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
    _pre_ms: float = field(default=0.0, init=False)
    _candidate_ms: float = field(default=0.0, init=False)
    _candidate_speech_ms: float = field(default=0.0, init=False)
    _candidate_silence_ms: float = field(default=0.0, init=False)  # trailing silence of the candidate
    _buffer_ms: float = field(default=0.0, init=False)
    _buffer_silence_ms: float = field(default=0.0, init=False)  # trailing silence of the buffer

    @property
    def in_speech(self) -> bool:
        return self._triggered

    @property
    def speech_start_us(self) -> int:
        """Start of the utterance in progress (valid while `in_speech`)."""
        return self._start_us

    def _ms(self, pcm: bytes) -> float:
        return len(pcm) / 2 / self.sample_rate * 1000

    def _start_of(self, chunk: _Chunk) -> int:
        return chunk.end_us - int(self._ms(chunk.pcm) * 1000)

    def push(self, pcm: bytes, is_speech: bool, end_us: int) -> list[Utterance]:
        chunk = _Chunk(pcm, end_us, is_speech)
        if not self._triggered:
            return self._idle(chunk)
        ms = self._ms(pcm)
        self._buffer.append(chunk)
        self._buffer_ms += ms
        self._buffer_silence_ms = 0.0 if is_speech else self._buffer_silence_ms + ms
        if self._buffer_silence_ms >= self.silence_stop_ms:
            return [self._emit(last=True)]
        if self._buffer_ms >= self.max_utterance_s * 1000:
            return [self._emit(last=False)]
        return []

    def flush(self) -> list[Utterance]:
        """The call ended: what was being said is an utterance too."""
        if self._triggered and any(c.speech for c in self._buffer):
            return [self._emit(last=True)]
        self._reset()
        return []

    def _idle(self, chunk: _Chunk) -> list[Utterance]:
        ms = self._ms(chunk.pcm)
        if chunk.speech:
            self._add_candidate(chunk, ms)
            self._candidate_speech_ms += ms
            self._candidate_silence_ms = 0.0
        elif self._candidate:
            self._add_candidate(chunk, ms)
            self._candidate_silence_ms += ms
            if self._candidate_silence_ms > self.gap_ms:
                for c in self._candidate:
                    self._remember(c)
                self._clear_candidate()
        else:
            self._remember(chunk)
        if self._candidate and self._candidate_speech_ms >= self.min_speech_ms:
            self._triggered = True
            self._part = 0
            self._start_us = self._start_of(self._candidate[0])
            self._buffer = [*self._pre, *self._candidate]
            self._buffer_ms = self._pre_ms + self._candidate_ms
            self._buffer_silence_ms = self._candidate_silence_ms
            self._pre.clear()
            self._pre_ms = 0.0
            self._clear_candidate()
        return []

    def _add_candidate(self, chunk: _Chunk, ms: float) -> None:
        self._candidate.append(chunk)
        self._candidate_ms += ms

    def _clear_candidate(self) -> None:
        self._candidate = []
        self._candidate_ms = self._candidate_speech_ms = self._candidate_silence_ms = 0.0

    def _remember(self, chunk: _Chunk) -> None:
        self._pre.append(chunk)
        self._pre_ms += self._ms(chunk.pcm)
        while self._pre and self._pre_ms > self.pre_roll_ms:
            self._pre_ms -= self._ms(self._pre.popleft().pcm)

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
            self._buffer_ms = self._buffer_silence_ms = 0.0
            self._start_us = chunks[-1].end_us
        return utt

    def _reset(self) -> None:
        self._triggered = False
        self._buffer = []
        self._buffer_ms = self._buffer_silence_ms = 0.0
        self._clear_candidate()
        self._pre.clear()
        self._pre_ms = 0.0
        self._part = 0


class UtteranceDetector:
    """VAD + endpointer over the audio of one call, fed frames of any length.

    `on_chunk(pcm, is_speech, end_us)` sees every VAD decision as it is made (barge-in, voicemail
    detection), after the endpointer took it. A media worker runs all its calls' detectors through one
    `detect` per tick, so Silero runs once for all of them.
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
        self._pending_end_us = 0  # wall time at the end of the pending audio

    def feed(self, pcm: bytes, received_us: int) -> None:
        """Buffer one frame received at wall time `received_us` (the end of that frame)."""
        self._pending += pcm
        self._pending_end_us = received_us

    def next_chunk(self) -> tuple[bytes, int] | None:
        """The oldest whole Silero chunk buffered, with the wall time it ended at."""
        step = CHUNK * 2
        if len(self._pending) < step:
            return None
        chunk = bytes(self._pending[:step])
        del self._pending[:step]
        left_us = len(self._pending) // 2 * 1_000_000 // SAMPLE_RATE
        return chunk, self._pending_end_us - left_us

    def decide(self, chunk: bytes, probability: float, end_us: int) -> list[Utterance]:
        speech = probability >= self.threshold
        out = self.endpointer.push(chunk, speech, end_us)
        if self.on_chunk is not None:
            self.on_chunk(chunk, speech, end_us)
        return out

    def push(self, pcm: bytes, received_us: int) -> list[Utterance]:
        """Feed one frame and run what it completes (one stream alone: evaluations, tests)."""
        return [utt for _, utt in detect([(self, pcm, received_us)])]

    def flush(self) -> list[Utterance]:
        return self.endpointer.flush()


Detected = list[tuple[UtteranceDetector, Utterance]]
Chunk = tuple[UtteranceDetector, bytes, int]  # a stream, 512 samples of 16-bit PCM, wall time of its end


def chunks_of(frames: Iterable[tuple[UtteranceDetector, bytes, int]]) -> list[Chunk]:
    """Feed each detector its frames; every whole chunk now buffered, each stream's in order."""
    detectors: dict[int, UtteranceDetector] = {}
    for det, pcm, at_us in frames:
        det.feed(pcm, at_us)
        detectors[id(det)] = det
    out: list[Chunk] = []
    for det in detectors.values():
        while (chunk := det.next_chunk()) is not None:
            out.append((det, *chunk))
    return out


def batch_probabilities(streams: Sequence[SileroVad], pcm: Sequence[bytes]) -> list[float]:
    """Speech probability of each chunk (16-bit PCM) of its stream, where a stream may come more than
    once (its chunks in order): one ONNX run per round, round k taking each stream's k-th chunk."""
    rounds: list[list[int]] = []
    seen: dict[int, int] = {}
    for i, stream in enumerate(streams):
        k = seen.get(id(stream), 0)
        seen[id(stream)] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    probs = [0.0] * len(streams)
    for members in rounds:
        joined = b"".join(pcm[i] for i in members)
        rows = np.frombuffer(joined, dtype="<i2").reshape(len(members), CHUNK) * np.float32(1 / 32768)
        for i, prob in zip(members, probabilities([streams[i] for i in members], rows), strict=True):
            probs[i] = float(prob)
    return probs


def detect(frames: Iterable[tuple[UtteranceDetector, bytes, int]]) -> Detected:
    """Feed each detector its frames and decide every whole chunk, Silero running once per round;
    utterances come out in each stream's own order."""
    chunks = chunks_of(frames)
    probs = batch_probabilities([det.vad for det, _, _ in chunks], [pcm for _, pcm, _ in chunks])
    out: Detected = []
    for (det, pcm, end_us), prob in zip(chunks, probs, strict=True):
        out.extend((det, utt) for utt in det.decide(pcm, prob, end_us))
    return out
