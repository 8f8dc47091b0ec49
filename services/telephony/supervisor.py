"""The media worker processes of a node: spawn, hand out dials by free slot, restart the dead.

A worker that dies takes its calls with it; each is reported ENDED ("media worker died") so no call
is silently lost, and the worker is started again on the same SIP port. On stop the workers hang up
their calls and report them ENDED ("node shutting down") before the node's bus stops (`drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter, Gauge

from services.telephony import ipc
from voicebot import topics
from voicebot.bus import Bus, Event, encode, new_id
from voicebot.config import REPO_ROOT
from voicebot.events import CallLifecycle, Contact, DialCommand, Envelope

if TYPE_CHECKING:
    from services.telephony.app import Settings

log = structlog.get_logger("telephony.supervisor")

WORKER_RESTARTS = Counter("voicebot_telephony_worker_restarts_total", "media workers restarted after dying")
CALLS_LOST = Counter("voicebot_telephony_calls_lost_total", "calls ended because their media worker died")
BUSY_SLOTS = Gauge("voicebot_telephony_busy_slots", "calls in progress on this node")

ACCEPT_TIMEOUT_S = 15.0
EXIT_MARGIN_S = 5.0  # beyond the drain time, for a worker's bus and pjsua to stop
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
    sip_port: int
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    media_node: str = ""
    calls: dict[str, LiveCall] = field(default_factory=dict)
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)


class WorkerPool:
    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.slots = settings.telephony_calls_per_worker
        base = settings.telephony_sip_port
        self.workers = [Worker(i, base + i if base else 0) for i in range(settings.telephony_workers)]
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._stopping = False
        self._drained = False
        self._waiting: set[asyncio.Task[Any]] = set()  # dial handlers waiting for a free slot

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        for worker in self.workers:
            self._tasks.append(asyncio.create_task(self._supervise(worker)))

    async def drain(self) -> None:
        """Stop taking dials, let each worker hang up and report its calls, and wait for it to exit.

        Runs while the node's bus still works: calls a worker could not report are reported here.
        A dial waiting for a free slot is not taken; its offset stays uncommitted for the next node.
        """
        self._stopping = True
        self._notify()
        await self._terminate_workers()
        # each supervising task reports the calls its worker left behind, then returns
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=EXIT_MARGIN_S)
            for task in late:
                task.cancel()
        # dials still waiting for a slot are not taken: cancelling their handlers now (rather than after
        # the consumer's graceful timeout) leaves their offsets uncommitted for the next node
        self._drained = True
        for task in list(self._waiting):
            task.cancel()

    async def stop(self) -> None:
        self._stopping = True
        await self._terminate_workers()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _terminate_workers(self) -> None:
        """SIGTERM (a worker drains its calls), then SIGKILL what still runs after the drain time."""
        for worker in self.workers:
            if worker.proc and worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)
        wait_s = self.settings.telephony_drain_s + EXIT_MARGIN_S
        for worker in self.workers:
            if worker.proc and worker.proc.returncode is None:
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
        BUSY_SLOTS.set(sum(len(w.calls) for w in self.workers))

    async def _supervise(self, worker: Worker) -> None:
        while not self._stopping:
            started = time.monotonic()
            await self._run_once(worker)
            if self._stopping:
                return
            WORKER_RESTARTS.inc()
            # a worker that crashes at start must not spin the CPU
            delay = self.settings.telephony_worker_restart_s if time.monotonic() - started > 10 else 2.0
            await asyncio.sleep(delay)

    async def _run_once(self, worker: Worker) -> None:
        env = {**os.environ, "VOICEBOT_HTTP_PORT": "0", "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.telephony.worker",
            "--index",
            str(worker.index),
            "--sip-port",
            str(worker.sip_port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            cwd=str(REPO_ROOT),
            env=env,
            limit=2**20,
        )
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
            for fut in worker.pending.values():
                if not fut.done():
                    fut.set_exception(WorkerGone(f"worker {worker.index} exited"))
            worker.pending.clear()
            lost = list(worker.calls.values())
            worker.calls.clear()
            self._notify()
            if self._stopping:
                log.info("media worker stopped", index=worker.index, code=code, calls_left=len(lost))
            else:
                log.error("media worker exited", index=worker.index, code=code, calls_lost=len(lost))
            for call in lost:
                await self._report_lost(call)

    def _on_message(self, worker: Worker, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "draining":
            worker.ready = False
        elif op == "ready":
            worker.ready = True
            worker.media_node = msg.get("media_node", "")
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

    # ---- dials -----------------------------------------------------------------------------------

    def _free(self, worker: Worker) -> int:
        return self.slots - len(worker.calls) - len(worker.pending)

    def _pick(self) -> Worker | None:
        ready = [
            w for w in self.workers if w.ready and w.proc and w.proc.returncode is None and self._free(w) > 0
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
