"""Bot audio for one call: TtsAudio chunks become 20 ms frames queued as they arrive (never the whole reply).

Pure: the media thread pops `frames`; a frame's `tag` lists the turn events that happen when it leaves
(first frame of a turn: playback started; last frame of a final chunk: playback finished).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

FRAME_BYTES = 640  # 20 ms at 16 kHz, 16-bit mono


@dataclass(frozen=True, slots=True)
class TurnEvent:
    kind: str  # "started" or "finished"
    turn_id: str
    end_call: bool = False


@dataclass(slots=True)
class Frame:
    pcm: bytes
    tag: tuple[TurnEvent, ...] | None = None


@dataclass
class PlaybackQueue:
    """Frames to play, in arrival order; a stopped turn's late chunks are dropped (barge-in)."""

    frame_bytes: int = FRAME_BYTES
    frames: deque[Frame] = field(default_factory=deque)
    _carry: dict[str, bytes] = field(default_factory=dict)
    _started: set[str] = field(default_factory=set)
    _finished: set[str] = field(default_factory=set)
    _stopped: deque[str] = field(default_factory=lambda: deque(maxlen=64))

    def add(self, turn_id: str, pcm: bytes, final: bool, end_call: bool = False) -> int:
        """Queue one chunk of a turn; returns the number of frames queued."""
        if turn_id in self._stopped or turn_id in self._finished:
            return 0
        data = self._carry.pop(turn_id, b"") + pcm
        if len(data) % 2:
            data = data[:-1]
        whole = len(data) - len(data) % self.frame_bytes
        chunks = [data[i : i + self.frame_bytes] for i in range(0, whole, self.frame_bytes)]
        rest = data[whole:]
        if final:
            if rest or not chunks:
                chunks.append(rest + b"\x00" * (self.frame_bytes - len(rest)))
        elif rest:
            self._carry[turn_id] = rest
        if not chunks:
            return 0
        frames = [Frame(c) for c in chunks]
        if turn_id not in self._started:
            self._started.add(turn_id)
            frames[0].tag = (TurnEvent("started", turn_id),)
        if final:
            self._finished.add(turn_id)
            done = TurnEvent("finished", turn_id, end_call)
            frames[-1].tag = (*(frames[-1].tag or ()), done)
        self.frames.extend(frames)
        return len(frames)

    def stop(self) -> list[str]:
        """Drop everything queued; returns the turns cut short (their later chunks are ignored too)."""
        cut = [t for t in self._started if t not in self._finished]
        queued = {e.turn_id for f in self.frames if f.tag for e in f.tag if e.kind == "finished"}
        cut.extend(t for t in queued if t not in cut)
        cut.extend(t for t in self._carry if t not in cut)
        self.frames.clear()
        self._carry.clear()
        for turn_id in cut:
            self._stopped.append(turn_id)
            self._finished.add(turn_id)
        return sorted(cut)

    def drop(self, turn_id: str) -> None:
        """A turn that must never play (a reply overtaken by the customer): its chunks are ignored."""
        if turn_id not in self._stopped:
            self._stopped.append(turn_id)

    @property
    def idle(self) -> bool:
        """Nothing queued and no turn waiting for more chunks."""
        return not self.frames and not self._carry and self._started <= self._finished
