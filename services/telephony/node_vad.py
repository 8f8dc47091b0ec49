"""The node's voice activity detection: one Silero batch for the calls of all its media workers.

A media worker carries at most 4 calls (the pjsua2 cap), so Silero run inside each worker gets batches
of 3 and starts every run with cold caches: measured ~200 µs per call and chunk with 34 workers, where
one process running large batches pays ~60–70 µs. So the supervisor runs it for the node (`NodeVad`).
Once a tick, a worker sends the whole chunks its calls received over its own socket (`VadClient`); the
node answers each chunk's speech probability, in order, and the worker's endpointers decide with them.

One SEQPACKET socket pair per worker (the worker's end is inherited), one message per request:
    request  <I seq><H n><H ended>  n × <I stream>  ended × <I stream>  n × 1024 bytes (16-bit PCM)
    reply    <I seq><H n>  n × <f probability>
A stream is one call on that worker (ids are the worker's); `ended` lets the node forget one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog
from prometheus_client import Counter, Histogram

from voicebot import vad

log = structlog.get_logger("telephony.vad")

CHUNK_BYTES = vad.CHUNK * 2
MAX_CHUNKS = 64  # per request: a message stays far below the socket buffer
BATCH_WAIT_S = 0.002  # the node waits this long for other workers' chunks before a run
_HEAD = struct.Struct("<IHH")
_REPLY = struct.Struct("<IH")

VAD_BATCH = Histogram(
    "voicebot_telephony_vad_batch_chunks",
    "chunks decided by one Silero run of the node",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
VAD_RUN = Histogram(
    "voicebot_telephony_vad_run_seconds",
    "one batch of the node's Silero (all rounds)",
    buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032),
)
VAD_ERRORS = Counter("voicebot_telephony_vad_errors_total", "VAD requests dropped", ["reason"])


@dataclass(frozen=True, slots=True)
class Request:
    seq: int
    streams: list[int]
    ended: list[int]
    pcm: list[bytes]


def pack_request(seq: int, chunks: Sequence[tuple[int, bytes]], ended: Sequence[int] = ()) -> bytes:
    if len(chunks) > MAX_CHUNKS:
        raise ValueError(f"at most {MAX_CHUNKS} chunks in one request, got {len(chunks)}")
    if any(len(pcm) != CHUNK_BYTES for _, pcm in chunks):
        raise ValueError(f"every chunk is {CHUNK_BYTES} bytes")
    streams = [stream for stream, _ in chunks]
    return b"".join(
        [
            _HEAD.pack(seq, len(chunks), len(ended)),
            struct.pack(f"<{len(streams)}I{len(ended)}I", *streams, *ended),
            *(pcm for _, pcm in chunks),
        ]
    )


def unpack_request(data: bytes) -> Request:
    """A worker's request; ValueError when it is not one (the node drops it, the worker goes on)."""
    if len(data) < _HEAD.size:
        raise ValueError("short request")
    seq, n, ended = _HEAD.unpack_from(data)
    ids_end = _HEAD.size + 4 * (n + ended)
    if len(data) != ids_end + n * CHUNK_BYTES:
        raise ValueError(f"request of {len(data)} bytes does not hold {n} chunks and {ended} ended")
    ids = struct.unpack_from(f"<{n + ended}I", data, _HEAD.size)
    pcm = [data[ids_end + i * CHUNK_BYTES : ids_end + (i + 1) * CHUNK_BYTES] for i in range(n)]
    return Request(seq, list(ids[:n]), list(ids[n:]), pcm)


def pack_reply(seq: int, probs: Sequence[float]) -> bytes:
    return _REPLY.pack(seq, len(probs)) + struct.pack(f"<{len(probs)}f", *probs)


def unpack_reply(data: bytes) -> tuple[int, list[float]]:
    if len(data) < _REPLY.size:
        raise ValueError("short reply")
    seq, n = _REPLY.unpack_from(data)
    if len(data) != _REPLY.size + 4 * n:
        raise ValueError(f"reply of {len(data)} bytes does not hold {n} probabilities")
    return seq, list(struct.unpack_from(f"<{n}f", data, _REPLY.size))


def _received(sock: socket.socket) -> Iterator[bytes]:
    """Every message waiting on a non-blocking socket; at its end (the other process is gone) the loop
    stops watching it, or it would report it readable forever."""
    while True:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            return
        yield data


@dataclass
class _Worker:
    sock: socket.socket
    streams: dict[int, vad.SileroVad] = field(default_factory=dict)


class NodeVad:
    """The supervisor's side: requests from every worker, gathered for `BATCH_WAIT_S`, then one batch."""

    def __init__(self) -> None:
        self._workers: dict[int, _Worker] = {}
        self._pending: list[tuple[_Worker, Request]] = []
        self._run_at: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        await asyncio.to_thread(vad.load_model)

    def open(self, index: int) -> socket.socket:
        """A new socket pair for worker `index` (a restarted worker starts afresh); returns its end,
        which the caller hands to the worker process and then closes."""
        self.close(index)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setblocking(False)
        worker = _Worker(mine)
        self._workers[index] = worker
        asyncio.get_running_loop().add_reader(mine.fileno(), self._read, worker)
        return theirs

    def close(self, index: int) -> None:
        worker = self._workers.pop(index, None)
        if worker is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(worker.sock.fileno())
        worker.sock.close()
        self._pending = [(w, r) for w, r in self._pending if w is not worker]

    def stop(self) -> None:
        for index in list(self._workers):
            self.close(index)
        if self._run_at is not None:
            self._run_at.cancel()

    def _read(self, worker: _Worker) -> None:
        for data in _received(worker.sock):
            try:
                request = unpack_request(data)
            except ValueError as exc:
                VAD_ERRORS.labels("malformed").inc()
                log.error("malformed VAD request", error=str(exc))
                continue
            for stream in request.ended:
                worker.streams.pop(stream, None)
            if request.streams:
                self._pending.append((worker, request))
        if self._pending and self._run_at is None:
            self._run_at = asyncio.get_running_loop().call_later(BATCH_WAIT_S, self._run)

    def _run(self) -> None:
        self._run_at = None
        pending, self._pending = self._pending, []
        streams: list[vad.SileroVad] = []
        pcm: list[bytes] = []
        for worker, request in pending:
            for stream, chunk in zip(request.streams, request.pcm, strict=True):
                state = worker.streams.get(stream)
                if state is None:
                    state = worker.streams[stream] = vad.SileroVad()
                streams.append(state)
                pcm.append(chunk)
        started = time.perf_counter()
        probs = vad.batch_probabilities(streams, pcm)
        VAD_RUN.observe(time.perf_counter() - started)
        VAD_BATCH.observe(len(streams))
        at = 0
        for worker, request in pending:
            n = len(request.streams)
            try:
                worker.sock.send(pack_reply(request.seq, probs[at : at + n]))
            except (BlockingIOError, OSError):  # the worker is gone or stuck: it will see no answer
                VAD_ERRORS.labels("reply_not_sent").inc()
            at += n


T = TypeVar("T")


class VadClient(Generic[T]):
    """A media worker's side: chunks out once a tick, `on_reply(items, probabilities)` as answers come.

    Each chunk travels with an item of the caller's (what the answer is for), kept until its reply.
    """

    def __init__(self, sock: socket.socket, on_reply: Callable[[list[T], list[float]], None]) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.on_reply = on_reply
        self._seq = 0
        self._waiting: deque[tuple[int, list[T]]] = deque()
        self._ended: list[int] = []

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()

    def forget(self, stream: int) -> None:
        """A call ended: the node drops its state with the next request."""
        self._ended.append(stream)

    def send(self, chunks: Sequence[tuple[int, bytes]], items: Sequence[T]) -> None:
        for at in range(0, max(len(chunks), 1 if self._ended else 0), MAX_CHUNKS):
            part = list(chunks[at : at + MAX_CHUNKS])
            self._seq = (self._seq + 1) % 2**32
            try:
                self.sock.send(pack_request(self._seq, part, self._ended))
            except (BlockingIOError, OSError) as exc:  # the node is far behind: these chunks go undecided
                VAD_ERRORS.labels("request_not_sent").inc()
                log.error("VAD request not sent", chunks=len(part), error=str(exc))
                continue
            self._ended = []
            if part:
                self._waiting.append((self._seq, list(items[at : at + MAX_CHUNKS])))

    def _read(self) -> None:
        for data in _received(self.sock):
            try:
                seq, probs = unpack_reply(data)
            except ValueError as exc:
                VAD_ERRORS.labels("malformed").inc()
                log.error("malformed VAD reply", error=str(exc))
                continue
            while self._waiting and self._waiting[0][0] != seq:  # a request whose reply was lost
                self._waiting.popleft()
            if not self._waiting:
                continue
            _, items = self._waiting.popleft()
            if len(items) == len(probs):
                self.on_reply(items, probs)
