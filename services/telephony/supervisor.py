"""The media worker processes of a node: an elastic pool, dials handed out by free slot, the dead restarted.

The pjsua2 wheel carries 4 calls per process, so the node runs between `telephony_workers_min` and
`telephony_workers` worker processes, each on its own SIP port (RTP ports are picked by the OS). Another
worker starts when fewer than `telephony_spawn_free_slots` slots are free (a dial waiting for a slot
counts against them); a worker beyond the minimum idle for `telephony_idle_retire_s` is retired: it
leaves the SIP front's list, refuses new calls and exits once its last call has ended.

A worker that dies takes its calls with it; each is reported ENDED ("media worker died") so no call is
silently lost, and the worker is started again on the same SIP port. On stop the workers hang up their
calls and report them ENDED ("node shutting down") before the node's bus stops (`drain`).

With `telephony_kamailio`, the node runs a Kamailio front (voicebot.kamailio) on one address and keeps
its dispatcher list equal to the ready workers; Kamailio also pings them, so a dead one gets no INVITE.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from services.telephony import ipc
from services.telephony.node_vad import NodeVad
from voicebot import topics
from voicebot.broker import create_topics
from voicebot.bus import Bus, Event, encode, new_id
from voicebot.config import REPO_ROOT
from voicebot.events import CallCommand, CallLifecycle, Contact, DialCommand, Envelope, TtsAudio
from voicebot.kamailio import Front, FrontError
from voicebot.sip import FrameTiming

if TYPE_CHECKING:
    from services.telephony.app import Settings

log = structlog.get_logger("telephony.supervisor")

WORKER_RESTARTS = Counter("voicebot_telephony_worker_restarts_total", "media workers restarted after dying")
WORKERS_SPAWNED = Counter("voicebot_telephony_workers_spawned_total", "media workers started for load")
WORKERS_RETIRED = Counter("voicebot_telephony_workers_retired_total", "idle media workers retired")
CALLS_LOST = Counter("voicebot_telephony_calls_lost_total", "calls ended because their media worker died")
BUSY_SLOTS = Gauge("voicebot_telephony_busy_slots", "calls in progress on this node")
WORKERS = Gauge("voicebot_telephony_workers", "media worker processes of this node", ["state"])

ACCEPT_TIMEOUT_S = 15.0
EXIT_MARGIN_S = 5.0  # beyond the drain time, for a worker's bus and pjsua to stop
SCALE_EVERY_S = 0.5
FRONT_RESTART_S = 1.0
STUCK_PIPE_BYTES = 8 * 2**20  # a worker that stopped reading its pipe gets no more inbox events
SHUTDOWN_REASON = "node shutting down"


class WorkerGone(RuntimeError):
    """The worker exited before answering a dial; the dial goes to another worker."""


@dataclass
class LiveCall:
    env: Envelope
    contact: Contact
    attempt: int
    direction: int
    answered_at: float | None = None


@dataclass
class Worker:
    index: int
    sip_port: int  # asked for (0: any); `address` is what it bound
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    retiring: bool = False  # leaving the pool: takes no new call, exits when idle, is not restarted
    media_node: str = ""
    address: str = ""
    calls: dict[str, LiveCall] = field(default_factory=dict)
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    idle_since: float = field(default_factory=time.monotonic)
    frames: dict[str, dict[str, Any]] = field(default_factory=dict)  # its latest sip.FrameTiming snapshot
    task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


def media_node(settings: Settings, index: int) -> str:
    """The name of worker `index` of this node (as the worker names itself): its calls' `media_node`."""
    return f"{settings.instance()}-w{index}"


@dataclass(frozen=True)
class PoolWorker:
    """A worker as the scaling rule sees it."""

    index: int
    free: int  # slots it can still take (a starting worker: all of them)
    ready: bool
    retiring: bool
    idle_s: float  # since its last call or dial changed


def plan_pool(
    workers: list[PoolWorker],
    waiting: int,
    *,
    slots: int,
    min_workers: int,
    max_workers: int,
    spawn_free_slots: int,
    idle_retire_s: float,
) -> tuple[int, int | None]:
    """How many workers to start now, and which one to retire (index, or None).

    Start while fewer than `spawn_free_slots` slots are free (each dial waiting for a slot needs one
    more), up to `max_workers` processes (retiring ones still count: they have not exited). Retire at
    most one at a time: the highest-index ready worker with no call, idle for `idle_retire_s`, when the
    node keeps `min_workers` and enough free slots without it.
    """
    wanted = spawn_free_slots + waiting
    active = [w for w in workers if not w.retiring]
    free = sum(w.free for w in active)
    spawn = 0
    while free < wanted and len(workers) + spawn < max_workers:
        spawn += 1
        free += slots
    if spawn or len(active) <= min_workers or free - slots < wanted:
        return spawn, None
    idle = [w for w in active if w.ready and w.free == slots and w.idle_s >= idle_retire_s]
    return 0, max(idle, key=lambda w: w.index).index if idle else None


class WorkerPool:
    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.slots = settings.telephony_calls_per_worker
        self.max_workers = settings.telephony_workers
        self.min_workers = min(settings.telephony_workers_min, self.max_workers)
        self.workers: dict[int, Worker] = {}
        self.front: Front | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._front_dirty = asyncio.Event()
        self._stopping = False
        self._scaling = False
        self._drained = False
        self._waiting: set[asyncio.Task[Any]] = set()  # dial handlers waiting for a free slot
        self._frames_done = FrameTotals()  # frame timing of worker processes that have exited
        self._collector = _FrameCollector(self)
        self.vad = NodeVad() if settings.telephony_node_vad else None
        self._inboxes: dict[str, int] = {}  # inbox topic → worker index
        if settings.telephony_inbox_via_supervisor:
            for index in range(self.max_workers):
                topic = topics.node_inbox(media_node(settings, index))
                self._inboxes[topic] = index
                bus.on(topic, TtsAudio, CallCommand, group=None, offset_reset="latest")(self._forward)

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        with contextlib.suppress(ValueError):  # already registered (a pool started again in one process)
            REGISTRY.register(self._collector)
        if self._inboxes:  # before the bus starts: its consumer finds every topic it reads
            await create_topics(self.settings.kafka_bootstrap, dict.fromkeys(self._inboxes, 1))
        if self.vad is not None:
            await self.vad.start()
        if self.settings.telephony_kamailio:
            self.front = Front(self.settings.telephony_sip_host, self.settings.telephony_kamailio_port)
            await self.front.start()
            self._tasks.append(asyncio.create_task(self._supervise_front(self.front)))
            self._tasks.append(asyncio.create_task(self._follow_front(self.front)))
        for _ in range(self.min_workers):
            self._spawn("minimum")
        self._tasks.append(asyncio.create_task(self._autoscale()))

    async def drain(self) -> None:
        """Stop taking dials, let each worker hang up and report its calls, and wait for it to exit.

        Runs while the node's bus still works: calls a worker could not report are reported here.
        A dial waiting for a free slot is not taken; its offset stays uncommitted for the next node.
        The SIP front stops last: the workers' BYEs pass through it (it record-routes).
        """
        self._stopping = True
        self._notify()
        await self._terminate_workers()
        # each supervising task reports the calls its worker left behind, then returns
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=EXIT_MARGIN_S)
            for task in late:
                task.cancel()
        # dials still waiting for a slot are not taken: cancelling their handlers now (rather than after
        # the consumer's graceful timeout) leaves their offsets uncommitted for the next node
        self._drained = True
        for task in list(self._waiting):
            task.cancel()
        await self._stop_front()

    async def stop(self) -> None:
        self._stopping = True
        await self._terminate_workers()
        tasks = self._tasks + [w.task for w in self.workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stop_front()
        if self.vad is not None:
            self.vad.stop()
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(self._collector)

    async def _stop_front(self) -> None:
        if self.front is not None:
            await self.front.stop()

    async def _terminate_workers(self) -> None:
        """SIGTERM (a worker drains its calls), then SIGKILL what still runs after the drain time."""
        workers = list(self.workers.values())
        for worker in workers:
            if worker.proc and worker.alive:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)
        wait_s = self.settings.telephony_drain_s + EXIT_MARGIN_S
        for worker in workers:
            if worker.proc and worker.alive:
                try:
                    await asyncio.wait_for(worker.proc.wait(), wait_s)
                except TimeoutError:
                    log.error("media worker did not stop in time; killing it", index=worker.index)
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()
                    await worker.proc.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self._front_dirty.set()
        BUSY_SLOTS.set(sum(len(w.calls) for w in self.workers.values()))
        states = {"starting": 0, "ready": 0, "retiring": 0}
        for w in self.workers.values():
            states["retiring" if w.retiring else "ready" if w.ready else "starting"] += 1
        for state, n in states.items():
            WORKERS.labels(state).set(n)
        if not self._scaling:
            self._scale()

    # ---- elasticity ------------------------------------------------------------------------------

    def free_slots(self) -> int:
        """Slots of the workers that take calls, starting ones included (they will be ready soon)."""
        return sum(self._free(w) for w in self.workers.values() if not w.retiring)

    def _scale(self) -> None:
        """Start workers while too few slots are free; retire one idle worker beyond the minimum."""
        if self._stopping or self._scaling:
            return
        self._scaling = True
        try:
            self._scale_once()
        finally:
            self._scaling = False

    def _scale_once(self) -> None:
        now = time.monotonic()
        seen = [
            PoolWorker(w.index, self._free(w), w.ready, w.retiring, now - w.idle_since)
            for w in self.workers.values()
        ]
        spawn, retire = plan_pool(
            seen,
            waiting=len(self._waiting),
            slots=self.slots,
            min_workers=self.min_workers,
            max_workers=self.max_workers,
            spawn_free_slots=self.settings.telephony_spawn_free_slots,
            idle_retire_s=self.settings.telephony_idle_retire_s,
        )
        free = self.free_slots()
        for _ in range(spawn):
            self._spawn("load", free=free)
            free += self.slots
        if retire is not None:
            self._retire(self.workers[retire])

    async def _autoscale(self) -> None:
        """Idle time passes without any event: look again now and then."""
        while not self._stopping:
            await asyncio.sleep(SCALE_EVERY_S)
            self._scale()

    def _spawn(self, reason: str, free: int | None = None) -> Worker:
        index = next(i for i in range(self.max_workers) if i not in self.workers)
        base = self.settings.telephony_sip_port
        worker = Worker(index, base + index if base else 0)
        self.workers[index] = worker
        worker.task = asyncio.create_task(self._supervise(worker))
        if reason != "minimum":
            WORKERS_SPAWNED.inc()
            log.info("media worker spawned", index=index, free_slots=free, workers=len(self.workers))
        return worker

    def _retire(self, worker: Worker) -> None:
        worker.retiring = True
        log.info("media worker retiring", index=worker.index, workers=len(self.workers))
        self._notify()
        self._tasks.append(asyncio.create_task(self._send_retire(worker)))

    async def _send_retire(self, worker: Worker) -> None:
        """Out of the front's list first, so Kamailio sends it no new INVITE; then the worker drains."""
        if self.front is not None:
            with contextlib.suppress(FrontError):
                await self.front.set_targets(self._front_targets())
        if worker.proc is not None and worker.proc.stdin is not None and worker.alive:
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                worker.proc.stdin.write(ipc.line("retire"))
                await worker.proc.stdin.drain()

    # ---- SIP front -------------------------------------------------------------------------------

    def _front_targets(self) -> list[str]:
        return [w.address for w in self.workers.values() if w.ready and w.alive and not w.retiring]

    async def _follow_front(self, front: Front) -> None:
        """Keep Kamailio's dispatcher list equal to the ready workers (coalescing bursts of changes)."""
        while True:
            await self._front_dirty.wait()
            self._front_dirty.clear()
            if self._stopping:
                continue
            try:
                await front.set_targets(self._front_targets())
            except FrontError as exc:
                log.error("sip front did not take the worker list", error=str(exc))
                await asyncio.sleep(FRONT_RESTART_S)
                self._front_dirty.set()

    async def _supervise_front(self, front: Front) -> None:
        """Kamailio should not die; if it does, inbound calls stop until it is started again."""
        while not self._stopping:
            if front.proc is not None:
                code = await front.proc.wait()
                if self._stopping:
                    return
                log.error("sip front exited; starting it again", code=code)
            await asyncio.sleep(FRONT_RESTART_S)
            try:
                await front.start(self._front_targets())
            except FrontError as exc:
                log.error("sip front did not start", error=str(exc))
                front.proc = None

    # ---- one worker ------------------------------------------------------------------------------

    async def _supervise(self, worker: Worker) -> None:
        try:
            while not self._stopping:
                started = time.monotonic()
                await self._run_once(worker)
                if self._stopping:
                    return
                if worker.retiring:
                    WORKERS_RETIRED.inc()
                    log.info("media worker retired", index=worker.index, workers=len(self.workers) - 1)
                    return
                WORKER_RESTARTS.inc()
                # a worker that crashes at start must not spin the CPU
                delay = self.settings.telephony_worker_restart_s if time.monotonic() - started > 10 else 2.0
                await asyncio.sleep(delay)
        finally:
            if not self._stopping:
                self.workers.pop(worker.index, None)
                self._notify()

    async def _run_once(self, worker: Worker) -> None:
        # a native crash (pjsua runs in-process) leaves the Python stack of every thread in the log
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
        vad_sock = self.vad.open(worker.index) if self.vad is not None else None
        vad_args = ["--vad-fd", str(vad_sock.fileno())] if vad_sock is not None else []
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.telephony.worker",
                "--index",
                str(worker.index),
                "--sip-port",
                str(worker.sip_port),
                *vad_args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,
                cwd=str(REPO_ROOT),
                env=env,
                limit=2**20,
                pass_fds=(vad_sock.fileno(),) if vad_sock is not None else (),
            )
        finally:
            if vad_sock is not None:
                vad_sock.close()  # the worker holds its end now
        worker.proc = proc
        log.info("media worker started", index=worker.index, pid=proc.pid)
        if self._stopping:  # the node began to stop while this worker was being spawned
            proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        try:
            while raw := await proc.stdout.readline():
                msg = ipc.parse(raw)
                if msg is not None:
                    self._on_message(worker, msg)
        finally:
            code = await proc.wait()
            worker.ready = False
            if self.vad is not None:
                self.vad.close(worker.index)
            self._frames_done.add(worker.frames)
            worker.frames = {}
            for fut in worker.pending.values():
                if not fut.done():
                    fut.set_exception(WorkerGone(f"worker {worker.index} exited"))
            worker.pending.clear()
            lost = list(worker.calls.values())
            worker.calls.clear()
            self._notify()
            if self._stopping:
                log.info("media worker stopped", index=worker.index, code=code, calls_left=len(lost))
            elif not (worker.retiring and code == 0 and not lost):
                log.error("media worker exited", index=worker.index, code=code, calls_lost=len(lost))
            for call in lost:
                await self._report_lost(call)

    def _on_message(self, worker: Worker, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "stats":
            worker.frames = msg.get("frames", {})
            return
        if op == "draining":
            worker.ready = False
        elif op == "ready":
            worker.ready = True
            worker.media_node = msg.get("media_node", "")
            worker.address = f"{self.settings.telephony_sip_host}:{msg.get('sip_port')}"
            log.info(
                "media worker ready",
                index=worker.index,
                media_node=worker.media_node,
                sip_port=msg.get("sip_port"),
            )
        elif op in ("accepted", "rejected"):
            fut = worker.pending.pop(msg.get("id", ""), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif op == "call":
            call = worker.calls.get(msg["call_id"])
            if call is None:
                call = LiveCall(
                    env=ipc.unpack(Envelope, msg["env"]),
                    contact=ipc.unpack(Contact, msg.get("contact", "")),
                    attempt=int(msg.get("attempt", 0)),
                    direction=int(msg.get("direction", 0)),
                )
                worker.calls[msg["call_id"]] = call
            if msg.get("answered") and call.answered_at is None:
                call.answered_at = time.monotonic()
        elif op == "ended":
            worker.calls.pop(msg["call_id"], None)
        worker.idle_since = time.monotonic()
        self._notify()

    async def _report_lost(self, call: LiveCall) -> None:
        CALLS_LOST.inc()
        ended = CallLifecycle(
            kind=CallLifecycle.ENDED,
            direction=call.direction,  # type: ignore[arg-type]
            contact=call.contact,
            sip_reason=SHUTDOWN_REASON if self._stopping else "media worker died",
            answered=call.answered_at is not None,
            duration_s=(time.monotonic() - call.answered_at) if call.answered_at else 0.0,
            hangup_by="network",
            attempt=call.attempt,
        )
        try:
            await self.bus.publish(topics.LIFECYCLE, ended, cause=call.env)
        except Exception as exc:  # the bus may be stopping; the log is the last record
            log.error("could not report a lost call", call_id=call.env.call_id, error=str(exc))

    # ---- inbox -----------------------------------------------------------------------------------

    async def _forward(self, event: Event[Any]) -> None:
        """Bot audio or a command for a call, to the worker that carries it (its inbox topic says which).

        One consumer for the node instead of one per worker: an idle consumer polls the broker every
        `fetch_max_wait_ms`, and with dozens of workers that polling alone took more CPU than the calls.
        """
        worker = self.workers.get(self._inboxes.get(event.topic, -1))
        if worker is None or worker.proc is None or worker.proc.stdin is None or not worker.alive:
            return  # its worker is gone, and with it the call (reported ENDED)
        pipe = worker.proc.stdin
        if pipe.transport.get_write_buffer_size() > STUCK_PIPE_BYTES:
            log.error("media worker does not read its pipe; inbox event dropped", index=worker.index)
            return
        with contextlib.suppress(ConnectionError, BrokenPipeError, RuntimeError):
            pipe.write(ipc.line("inbox", event=ipc.pack_bytes(encode(event.payload, event.envelope))))

    # ---- dials -----------------------------------------------------------------------------------

    def _free(self, worker: Worker) -> int:
        return self.slots - len(worker.calls) - len(worker.pending)

    def _pick(self) -> Worker | None:
        ready = [
            w for w in self.workers.values() if w.ready and w.alive and not w.retiring and self._free(w) > 0
        ]
        return max(ready, key=self._free, default=None)

    async def _free_worker(self) -> Worker:
        """The worker with the most free slots, once there is one; while the node stops there is none,
        and `drain` cancels the waiting handler."""
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            while True:
                if self._drained:
                    raise asyncio.CancelledError
                changed = self._changed
                worker = None if self._stopping else self._pick()
                if worker is not None:
                    return worker
                self._scale()  # a waiting dial is demand: maybe start a worker
                await changed.wait()
        finally:
            self._waiting.discard(task)

    async def dispatch(self, event: Event[DialCommand]) -> str:
        """Hand the dial to a worker with a free slot, waiting while all are busy; returns the call id."""
        raw = ipc.pack(Envelope.FromString(encode(event.payload, event.envelope)))
        while True:
            worker = await self._free_worker()
            req = new_id()
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            worker.pending[req] = fut
            try:
                assert worker.proc is not None and worker.proc.stdin is not None
                worker.proc.stdin.write(ipc.line("dial", id=req, event=raw))
                await worker.proc.stdin.drain()
                reply = await asyncio.wait_for(fut, ACCEPT_TIMEOUT_S)
            except (WorkerGone, TimeoutError, ConnectionError, BrokenPipeError) as exc:
                log.warning("dial not taken, trying another worker", index=worker.index, error=str(exc))
                await asyncio.sleep(0.1)
                continue
            finally:
                worker.pending.pop(req, None)
                self._notify()
            if reply["op"] == "accepted":
                return str(reply.get("call_id", ""))
            if reply.get("error") not in ("busy", "draining"):
                log.error("dial refused", error=reply.get("error"))
                return ""
            await asyncio.sleep(0.05)

    # ---- frame timing ----------------------------------------------------------------------------

    def frame_totals(self) -> FrameTotals:
        totals = FrameTotals()
        totals.merge(self._frames_done)
        for worker in self.workers.values():
            totals.add(worker.frames)
        return totals


class FrameTotals:
    """Sum of the workers' sip.FrameTiming snapshots (counts and sums add up, maxima take the max)."""

    def __init__(self) -> None:
        n = len(FrameTiming.BUCKETS_MS) + 1
        self.counts = {kind: [0] * n for kind in FrameTiming.KINDS}
        self.sum_ms = dict.fromkeys(FrameTiming.KINDS, 0.0)
        self.max_ms = dict.fromkeys(FrameTiming.KINDS, 0.0)

    def add(self, snapshot: dict[str, dict[str, Any]]) -> None:
        for kind, part in snapshot.items():
            if kind not in self.counts:
                continue
            self.counts[kind] = [
                a + b for a, b in zip(self.counts[kind], part.get("counts", []), strict=False)
            ]
            self.sum_ms[kind] += float(part.get("sum_ms", 0.0))
            self.max_ms[kind] = max(self.max_ms[kind], float(part.get("max_ms", 0.0)))

    def merge(self, other: FrameTotals) -> None:
        for kind in other.counts:
            self.add(
                {
                    kind: {
                        "counts": other.counts[kind],
                        "sum_ms": other.sum_ms[kind],
                        "max_ms": other.max_ms[kind],
                    }
                }
            )


class _FrameCollector(Collector):
    """The node's frame timing on its /metrics (the workers' own ports are not scraped)."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        totals = self.pool.frame_totals()
        hist = HistogramMetricFamily(
            "voicebot_telephony_frame_lateness_seconds",
            "media clock lateness per frame (rx/tx: gap beyond the on-time cadence; lag: wait before VAD)",
            labels=["kind"],
        )
        peak = GaugeMetricFamily(
            "voicebot_telephony_frame_lateness_max_seconds", "largest frame lateness seen", labels=["kind"]
        )
        for kind, counts in totals.counts.items():
            buckets, seen = [], 0
            for le, n in zip((*FrameTiming.BUCKETS_MS, float("inf")), counts, strict=True):
                seen += n
                buckets.append(("+Inf" if le == float("inf") else str(le / 1000), seen))
            hist.add_metric([kind], buckets, totals.sum_ms[kind] / 1000)
            peak.add_metric([kind], totals.max_ms[kind] / 1000)
        yield hist
        yield peak
