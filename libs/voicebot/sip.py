"""pjsua2 plumbing shared by the telephony workers and the simulated customers (notes/pjsua2.md).

One Endpoint per process, polled from asyncio (threadCnt=0, mainThreadOnly), so every SIP callback
runs on the event loop's thread. Audio frames arrive on pjsua's media clock thread: `FramePort` copies
them in bulk and hands them to the loop with `call_soon_threadsafe`, and plays frames queued by the loop.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import ctypes
import gc
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj
import structlog
from prometheus_client import Counter

log = structlog.get_logger("voicebot.sip")

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 640: 20 ms of 16-bit mono
BRIDGE_TICK_MS = 20  # the conference bridge's frame time (pjsua's default audioFramePtime)

CALLBACK_ERRORS = Counter(
    "voicebot_sip_callback_errors_total", "exceptions raised in pjsua2 callbacks", ["where"]
)

_PTR = ctypes.sizeof(ctypes.c_void_p)


def now_us() -> int:
    return time.time_ns() // 1000


def _vector_span(vec: pj.ByteVector) -> tuple[int, int]:
    """begin/end pointers of a std::vector<unsigned char> (libstdc++ layout: begin, end, capacity)."""
    addr = int(vec.this)
    begin = ctypes.c_void_p.from_address(addr).value or 0
    end = ctypes.c_void_p.from_address(addr + _PTR).value or 0
    return begin, end


def frame_bytes(vec: pj.ByteVector) -> bytes:
    """Bulk copy of a frame buffer: ~3 µs where `bytes(vec)` costs ~345 µs (element by element)."""
    begin, end = _vector_span(vec)
    if end <= begin:
        return b""
    return ctypes.string_at(begin, end - begin)


def fill_frame(frame: pj.MediaFrame, data: bytes) -> None:
    """Write `data` into a frame's buffer in place (resize once, then memmove)."""
    buf = frame.buf
    if buf.size() != len(data):
        buf.resize(len(data))
    begin, _ = _vector_span(buf)
    ctypes.memmove(begin, data, len(data))
    frame.size = len(data)
    frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO


@dataclass(slots=True)
class OutFrame:
    """20 ms of audio to send; `tag` (when set) is reported back to the loop when the frame is sent."""

    pcm: bytes
    tag: Any = None


class FrameTiming:
    """How late the media clock runs, as the frame callbacks see it, for this process (all ports).

    `rx`/`tx`: each gap between two frames of a port beyond its longest on-time gap (`_Cadence`): a
    clock thread held up (CPU, the GIL) delays every call's audio. `lag`: a received frame's wait
    before the call's VAD got it. Plain counters written by one thread each (GIL-atomic), cheap
    enough for every frame; the worker reports `snapshot()` to its supervisor, which sums the node.
    """

    BUCKETS_MS = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
    KINDS = ("rx", "tx", "lag")

    def __init__(self) -> None:
        self.counts = {kind: [0] * (len(self.BUCKETS_MS) + 1) for kind in self.KINDS}
        self.sum_ms = dict.fromkeys(self.KINDS, 0.0)
        self.max_ms = dict.fromkeys(self.KINDS, 0.0)

    def observe(self, kind: str, late_ms: float) -> None:
        late_ms = max(late_ms, 0.0)
        self.counts[kind][bisect.bisect_left(self.BUCKETS_MS, late_ms)] += 1
        self.sum_ms[kind] += late_ms
        if late_ms > self.max_ms[kind]:
            self.max_ms[kind] = late_ms

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """{kind: {"counts": per bucket (last: beyond 320 ms), "sum_ms", "max_ms"}}, JSON-ready."""
        return {
            kind: {"counts": list(counts), "sum_ms": self.sum_ms[kind], "max_ms": self.max_ms[kind]}
            for kind, counts in self.counts.items()
        }


FRAME_TIMING = FrameTiming()


@dataclass(slots=True)
class _Cadence:
    """One direction of one port: how much later than its longest on-time gap each frame came.

    The bridge runs on 20 ms ticks; a port of longer frames gets one on the tick its audio is complete
    (32 ms frames: 40, 20, 40, 20, 40 … ms apart), so its on-time gaps reach the next whole tick.
    """

    max_gap_ns: int
    last_ns: int = 0

    @classmethod
    def of(cls, frame_ms: int) -> _Cadence:
        return cls(math.ceil(frame_ms / BRIDGE_TICK_MS) * BRIDGE_TICK_MS * 1_000_000)

    def tick(self, at_ns: int) -> float:
        """ms late of the frame at `at_ns` (the first frame after a restart is on time)."""
        late = at_ns - self.last_ns - self.max_gap_ns if self.last_ns else 0
        self.last_ns = at_ns
        return late / 1e6

    def restart(self) -> None:
        self.last_ns = 0


class FramePort(pj.AudioMediaPort):
    """A 16 kHz mono port of `frame_ms` frames between the conference bridge and Python.

    Both callbacks run on the media clock thread and only move bytes: a received frame is appended to
    `received` (the loop takes them with `take`, no wake-up per frame), a frame to send is popped from
    `queue`. The port sends only while `send(True)`: a silent bot costs the clock thread nothing.

    A port can serve one call after another (`reopen`): destroying one while the process runs frees
    its memory under the bridge, which may still touch it (heap corruption seen at 100 calls).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        name: str,
        on_sent: Callable[[Any, int], None],
        frame_ms: int = FRAME_MS,
    ) -> None:
        super().__init__()
        self.loop = loop
        self.on_sent = on_sent
        self.queue: deque[OutFrame] = deque()
        self.received: deque[tuple[bytes, int, int]] = deque()  # (pcm, wall µs, monotonic ns)
        self.closed = False
        self.paused = False  # barge-in: hold the queue (nothing is sent) until resumed or cleared
        self.sending = False
        self.sinks: list[pj.AudioMedia] = []  # where our frames go while sending (the call, a recorder)
        self._rx = _Cadence.of(frame_ms)
        self._tx = _Cadence.of(frame_ms)
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = SAMPLE_RATE
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = frame_ms * 1000
        self.createPort(name, fmt)

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        try:
            if self.closed:  # a port between two calls still gets the bridge's silent frames
                return
            at_ns = time.monotonic_ns()
            FRAME_TIMING.observe("rx", self._rx.tick(at_ns))
            if frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
                return
            data = frame_bytes(frame.buf)
            if data:
                self.received.append((data, now_us(), at_ns))
        except Exception:  # an exception here would be printed and swallowed by SWIG
            CALLBACK_ERRORS.labels("frame_received").inc()

    def take(self) -> list[tuple[bytes, int]]:
        """The frames received since the last call, oldest first, as (pcm, wall time µs at arrival)."""
        out = []
        now_ns = time.monotonic_ns()
        while self.received:
            pcm, at_us, at_ns = self.received.popleft()
            FRAME_TIMING.observe("lag", (now_ns - at_ns) / 1e6)
            out.append((pcm, at_us))
        return out

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        try:
            FRAME_TIMING.observe("tx", self._tx.tick(time.monotonic_ns()))
            item = self.queue.popleft() if self.queue and not self.closed and not self.paused else None
            if item is None:
                frame.type = pj.PJMEDIA_FRAME_TYPE_NONE
                frame.size = 0
                return
            fill_frame(frame, item.pcm)
            if item.tag is not None:
                self.loop.call_soon_threadsafe(self.on_sent, item.tag, now_us())
        except Exception:
            CALLBACK_ERRORS.labels("frame_requested").inc()

    def send(self, on: bool) -> None:
        """Start or stop sending to every sink (loop thread); the bridge asks for frames only meanwhile."""
        if on == self.sending:
            return
        self.sending = on
        self._tx.restart()
        for sink in self.sinks:
            with contextlib.suppress(Exception):  # a sink whose call just ended
                if on:
                    self.startTransmit(sink)
                else:
                    self.stopTransmit(sink)

    def close(self) -> None:
        """Nothing more is taken or sent, and the sinks are let go (a recorder completes its file only
        once nothing holds it)."""
        self.send(False)
        self.closed = True
        self.sinks.clear()

    def reopen(self, on_sent: Callable[[Any, int], None]) -> None:
        """Serve a new call: nothing queued, nothing received, not sending (loop thread)."""
        self.close()
        self.queue = deque()
        self.received.clear()
        self.on_sent = on_sent
        self.paused = False
        self._rx.restart()
        self.closed = False

    def add_sink(self, media: pj.AudioMedia) -> None:
        self.sinks.append(media)
        if self.sending:
            self.startTransmit(media)

    def connect(self, call: pj.Call) -> pj.AudioMedia:
        """Hear the call, and make it a sink of ours; returns the call's audio."""
        ci = call.getInfo()
        for i, media in enumerate(ci.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                aud = call.getAudioMedia(i)
                aud.startTransmit(self)
                self.add_sink(aud)
                return aud
        raise RuntimeError("call has no active audio media")


@dataclass(slots=True)
class SipEndpoint:
    """A started pjsua2 endpoint with one UDP transport."""

    ep: pj.Endpoint
    transport_id: int
    port: int

    async def close(self, forget: Callable[[], None], settle_s: float = 0.5) -> None:
        """Hang up, let pjsua finish its transactions, drop every Python reference, then destroy.

        `forget` must close the ports and drop all Call/port objects (and cancel timers holding them):
        a pjsua2 object that outlives `libDestroy` aborts the process (notes/pjsua2.md).
        """
        with contextlib.suppress(Exception):
            self.ep.hangupAllCalls()
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                self.ep.libHandleEvents(0)
            await asyncio.sleep(0.01)
        forget()
        await asyncio.sleep(0.05)  # frame hand-offs already queued on the loop run and let go
        gc.collect()
        with contextlib.suppress(Exception):
            self.ep.libDestroy()


def create_endpoint(
    port: int, host: str = "127.0.0.1", max_calls: int = 4, log_level: int = 1, quality: int = 4
) -> SipEndpoint:
    """Endpoint polled from the caller's thread, null sound device, 16 kHz bridge; `port=0` picks one.

    `quality` (pjsua's media quality, 1–10) picks the bridge's resampler: 3–4 a small filter, 5 and up
    a large one (measured: 4 G.711 calls took 4.1 % of a core on the clock thread, 2.5 % at quality 4).
    """
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = max_calls
    cfg.uaConfig.userAgent = "voicebot"
    cfg.logConfig.level = log_level
    cfg.logConfig.consoleLevel = log_level
    cfg.medConfig.clockRate = SAMPLE_RATE
    cfg.medConfig.sndClockRate = SAMPLE_RATE
    cfg.medConfig.channelCount = 1
    cfg.medConfig.noVad = True
    cfg.medConfig.ecTailLen = 0
    cfg.medConfig.quality = quality
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = port
    tcfg.boundAddress = host
    tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    prefer_codecs(ep, ["G722/16000", "PCMU/8000", "PCMA/8000"])
    bound = int(ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
    return SipEndpoint(ep=ep, transport_id=tid, port=bound)


def prefer_codecs(ep: pj.Endpoint, order: list[str]) -> None:
    """Offer wideband G.722 first (what trunks commonly carry), then G.711; others keep low priority."""
    for info in ep.codecEnum2():
        cid = info.codecId
        prio = 0
        for rank, prefix in enumerate(order):
            if cid.startswith(prefix):
                prio = 250 - rank
        with contextlib.suppress(Exception):
            ep.codecSetPriority(cid, prio if prio else min(info.priority, 100))


def account_config(host: str, port: int, user: str = "bot") -> pj.AccountConfig:
    """An account with no registrar (direct IP calls); RTP on free ports chosen by the OS."""
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{user}@{host}:{port}"
    acfg.mediaConfig.transportConfig.port = 0
    acfg.mediaConfig.transportConfig.boundAddress = host
    return acfg


def handle_events(ep: pj.Endpoint) -> None:
    """pjsua's pending SIP work (timers, transactions, callbacks), on the caller's thread."""
    try:
        ep.libHandleEvents(0)
    except Exception as exc:
        CALLBACK_ERRORS.labels("handle_events").inc()
        log.warning("libHandleEvents failed", error=str(exc))


async def pump_events(
    ep: pj.Endpoint, interval_s: float = 0.01, on_tick: Callable[[], None] | None = None
) -> None:
    """Run pjsua's SIP work on the loop's thread, then `on_tick` (take received frames), forever."""
    while True:
        handle_events(ep)
        if on_tick is not None:
            on_tick()
        await asyncio.sleep(interval_s)


def call_op(
    code: int = 0, reason: str = "", from_uri: str = "", headers: dict[str, str] | None = None
) -> pj.CallOpParam:
    """`from_uri` replaces the account's id in the From header of a new call (the caller ID shown);
    `headers` are extra SIP headers (values are made single-line and printable)."""
    prm = pj.CallOpParam(True)
    if code:
        prm.statusCode = code
    if reason:
        prm.reason = reason
    if from_uri:
        prm.txOption.localUri = from_uri
    for name, value in (headers or {}).items():
        header = pj.SipHeader()
        header.hName = name
        header.hValue = header_value(value)
        prm.txOption.headers.append(header)
    return prm


def header_value(text: str, limit: int = 500) -> str:
    """Printable ASCII on one line: nothing a caller said can break the SIP message around it."""
    return "".join(c if 32 <= ord(c) < 127 else " " for c in text)[:limit].strip()


def header(whole_msg: str, name: str) -> str:
    """A header's value from a raw SIP message ("" when absent)."""
    prefix = name.lower() + ":"
    for line in whole_msg.split("\r\n")[1:]:
        if not line:
            break
        if line.lower().startswith(prefix):
            return line.split(":", 1)[1].strip()
    return ""


CALLER_ID_RE = re.compile(r"^\+?[0-9]{3,15}$")


def caller_uri(caller_id: str, host: str, port: int) -> str:
    """The From URI that presents `caller_id` (a campaign's number); "" when it is not a plain number,
    so nothing but digits ever reaches a SIP header."""
    if not CALLER_ID_RE.match(caller_id):
        return ""
    return f"sip:{caller_id}@{host}:{port}"


def request_user(whole_msg: str) -> str:
    """The user part of an INVITE's request URI (`INVITE sip:+1555...@host SIP/2.0` → `+1555...`)."""
    first = whole_msg.split("\r\n", 1)[0].split("\n", 1)[0]
    parts = first.split()
    if len(parts) < 2:
        return ""
    uri = parts[1]
    if ":" in uri:
        uri = uri.split(":", 1)[1]
    return uri.split("@", 1)[0].split(";", 1)[0]


def uri_user(uri: str) -> str:
    """The user part of a SIP URI or name-addr (`"Ann" <sip:+1555...@host>` → `+1555...`)."""
    m = re.search(r"sips?:([^@;>\s]+)@", uri)
    return m.group(1) if m else ""


def exit_now(code: int = 0) -> None:
    """Leave after `libDestroy` without running finalizers: a pjsua2 proxy that Python still holds
    (SWIG keeps some alive) would call into the destroyed library at interpreter exit and abort."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
