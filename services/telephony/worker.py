"""A media worker process: one pjsua2 endpoint carrying up to 4 calls (the wheel's hard cap).

It dials what the supervisor hands it, answers inbound calls while it has a free slot, end-points the
customer's speech into `audio.utterances`, and plays the bot's audio from its own inbox topic as it
arrives. SIP callbacks run on the event loop's thread (libHandleEvents is polled from asyncio); frame
callbacks run on the media thread and only hand bytes over (voicebot.sip.FramePort).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pjsua2 as pj
import structlog
from google.protobuf.message import Message
from prometheus_client import Counter, Histogram

from services.telephony import ipc
from services.telephony.app import Settings
from services.telephony.playback import PlaybackQueue, TurnEvent
from voicebot import audio, observability, sip, topics, vad
from voicebot.broker import create_topics
from voicebot.bus import Event, decode, new_id
from voicebot.campaigns import CampaignBook
from voicebot.config import load
from voicebot.events import (
    AudioUtterance,
    CallCommand,
    CallLifecycle,
    Contact,
    DialCommand,
    Envelope,
    Mark,
    TtsAudio,
)
from voicebot.service import Service

log = structlog.get_logger("telephony.worker")

UTTERANCES_TOTAL = Counter("voicebot_telephony_utterances_total", "utterances end-pointed")
CALLS_TOTAL = Counter("voicebot_telephony_calls_total", "calls handled", ["direction", "outcome"])
FIRST_AUDIO_DELAY = Histogram(
    "voicebot_telephony_first_audio_seconds", "first TtsAudio chunk arrival → its first frame on the SIP leg"
)

HANGUP_GRACE_S = 0.3  # let the last frames leave the jitter/RTP path before BYE
DEFAULT_RING_TIMEOUT_S = 30.0
RELEASE_AFTER_S = 2.0
SHUTDOWN_REASON = "node shutting down"
Kind = CallLifecycle.Kind


@dataclass
class CallLeg:
    """One live call on this worker, keyed by our call_id (pjsua ids are reused)."""

    call_id: str
    env: Envelope
    contact: Contact
    attempt: int
    direction: int
    call: SipCall | None = None
    port: sip.FramePort | None = None
    detector: vad.UtteranceDetector | None = None
    playback: PlaybackQueue = field(default_factory=PlaybackQueue)
    turn_envs: dict[str, Envelope] = field(default_factory=dict)
    turn_first_chunk_us: dict[str, int] = field(default_factory=dict)
    playing: set[str] = field(default_factory=set)
    ring_timer: asyncio.TimerHandle | None = None
    answered_at: float | None = None
    rang: bool = False
    hangup_by: str = ""
    end_reason: str = ""  # reported in ENDED instead of the SIP reason (e.g. the node shutting down)
    hangup_after_playback: bool = False
    ended: bool = False


class SipCall(pj.Call):
    def __init__(
        self, worker: MediaWorker, account: pj.Account, pj_call_id: int = pj.PJSUA_INVALID_ID
    ) -> None:
        super().__init__(account, pj_call_id)
        self.worker = worker
        self.leg: CallLeg | None = None

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            self.worker.on_call_state(self)
        except Exception:
            sip.CALLBACK_ERRORS.labels("call_state").inc()
            log.exception("call state handler failed")

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        try:
            self.worker.on_media_state(self)
        except Exception:
            sip.CALLBACK_ERRORS.labels("media_state").inc()
            log.exception("media state handler failed")


class BotAccount(pj.Account):
    def __init__(self, worker: MediaWorker) -> None:
        super().__init__()
        self.worker = worker

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        try:
            self.worker.on_incoming(prm)
        except Exception:
            sip.CALLBACK_ERRORS.labels("incoming").inc()
            log.exception("incoming call handler failed")


class MediaWorker:
    def __init__(
        self, settings: Settings, svc: Service, index: int, sip_port: int, ipc_out: BinaryIO
    ) -> None:
        self.settings = settings
        self.svc = svc
        self.index = index
        self.sip_port = sip_port
        self.media_node = f"{settings.instance()}-w{index}"
        self.inbox = topics.node_inbox(self.media_node)
        self.ipc_out = ipc_out
        self.book = CampaignBook(settings.campaigns_dir)
        self.legs: dict[str, CallLeg] = {}
        self.retired: list[Any] = []  # pjsua objects kept alive until it is safe to free them
        self.started_us = sip.now_us()
        self.endpoint: sip.SipEndpoint | None = None
        self.account: BotAccount | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.outbox: asyncio.Queue[tuple[str, Message, Envelope]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: dict[object, asyncio.TimerHandle] = {}
        self.draining = False

    # ---- process ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await asyncio.to_thread(vad.load_model)
        await create_topics(self.settings.kafka_bootstrap, {self.inbox: 1})
        host = self.settings.telephony_sip_host
        self.endpoint = sip.create_endpoint(self.sip_port, host=host, max_calls=4)
        self.account = BotAccount(self)
        self.account.create(sip.account_config(host, self.endpoint.port, user=f"bot-w{self.index}"))
        self._tasks.append(asyncio.create_task(sip.pump_events(self.endpoint.ep)))
        self._tasks.append(asyncio.create_task(self._send_outbox()))
        self._tasks.append(asyncio.create_task(self._read_supervisor()))
        self._tasks.append(asyncio.create_task(self._announce_ready()))
        log.info("media worker up", media_node=self.media_node, sip_port=self.endpoint.port)

    async def drain(self) -> None:
        """Hang up every live call and publish its ENDED while the bus still runs: a stop loses no call.

        New dials are refused ("draining", so the supervisor keeps them) and inbound calls get 503.
        """
        self.draining = True
        self._tell("draining")
        live = [leg for leg in self.legs.values() if not leg.ended]
        if live:
            log.info("hanging up live calls before stopping", calls=len(live))
        for leg in live:
            leg.end_reason = SHUTDOWN_REASON
            self.hangup(leg, "bot")
        deadline = time.monotonic() + self.settings.telephony_drain_s
        while any(not leg.ended for leg in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for leg in live:  # the far end did not confirm in time: report the call ended all the same
            self._finish(leg, code=0, reason=SHUTDOWN_REASON, hangup_by="bot")
        try:
            await asyncio.wait_for(self.outbox.join(), max(deadline - time.monotonic(), 1.0))
        except TimeoutError:
            log.error("events left unpublished at stop", events=self.outbox.qsize())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.endpoint is not None:
            await self.endpoint.close(self._forget_all)

    def _forget_all(self) -> None:
        """Drop every pjsua object (the library is destroyed next); calls cut here are reported by the
        supervisor, which sees this worker exit."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for leg in self.legs.values():
            if leg.port is not None:
                leg.port.closed = True
            if leg.call is not None:
                leg.call.leg = None
            leg.call, leg.port, leg.detector = None, None, None
        self.legs.clear()
        self.retired.clear()
        self.account = None

    def _cancel(self, handle: asyncio.TimerHandle) -> None:
        handle.cancel()
        for token in [t for t, h in self._timers.items() if h is handle]:
            del self._timers[token]

    def _later(self, delay_s: float, fn: Any, *args: Any) -> asyncio.TimerHandle:
        """call_later whose pending handles `stop` can cancel (they hold call objects).

        No reference cycle (a closure over its own handle would make one): what a timer holds is
        freed when it has run, not by a later garbage collection (see `_release`, why that matters).
        """
        assert self.loop is not None
        token = object()
        handle = self.loop.call_later(delay_s, self._fire, token, fn, args)
        self._timers[token] = handle
        return handle

    def _fire(self, token: object, fn: Any, args: tuple[Any, ...]) -> None:
        self._timers.pop(token, None)
        fn(*args)

    async def _announce_ready(self) -> None:
        while not self.svc.ready:
            await asyncio.sleep(0.02)
        assert self.endpoint is not None
        self._tell(
            "ready",
            media_node=self.media_node,
            sip_port=self.endpoint.port,
            slots=self.settings.telephony_calls_per_worker,
        )

    def _tell(self, op: str, **fields: Any) -> None:
        try:
            self.ipc_out.write(ipc.line(op, **fields))
            self.ipc_out.flush()
        except OSError:  # the supervisor is gone (this worker is stopping): calls still end and report
            log.debug("supervisor pipe closed", op=op)

    async def _read_supervisor(self) -> None:
        """Dial orders on stdin; EOF means the supervisor is gone, so this worker stops too."""
        reader = asyncio.StreamReader(limit=2**22)
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer
        )
        while raw := await reader.readline():
            msg = ipc.parse(raw)
            if msg and msg["op"] == "dial":
                self._on_dial_order(msg)
        log.info("supervisor closed the pipe; stopping")
        self.svc.stop()

    def _on_dial_order(self, msg: dict[str, Any]) -> None:
        if self.draining:
            self._tell("rejected", id=msg["id"], error="draining")
            return
        if self.free_slots() <= 0:
            self._tell("rejected", id=msg["id"], error="busy")
            return
        try:
            event = decode(ipc.unpack(Envelope, msg["event"]).SerializeToString(), [DialCommand])
        except Exception as exc:
            self._tell("rejected", id=msg["id"], error=f"bad dial: {exc}")
            return
        leg = self.dial(event)
        self._tell("accepted", id=msg["id"], call_id=leg.call_id)

    async def _send_outbox(self) -> None:
        """One sender keeps each call's events in the order they happened."""
        while True:
            topic, payload, cause = await self.outbox.get()
            try:
                await self.svc.bus.publish(topic, payload, cause=cause)
            except Exception as exc:
                log.error("publish failed", topic=topic, error=str(exc))
            finally:
                self.outbox.task_done()

    def publish(self, topic: str, payload: Message, cause: Envelope) -> None:
        self.outbox.put_nowait((topic, payload, cause))

    def free_slots(self) -> int:
        return self.settings.telephony_calls_per_worker - sum(
            1 for leg in self.legs.values() if not leg.ended
        )

    def _lifecycle(self, leg: CallLeg, kind: int, **fields: Any) -> None:
        payload = CallLifecycle(
            kind=kind,
            direction=leg.direction,
            contact=leg.contact,
            attempt=leg.attempt,
            **fields,  # type: ignore[arg-type]
        )
        self.publish(topics.LIFECYCLE, payload, leg.env)

    def _report_call(self, leg: CallLeg) -> None:
        self._tell(
            "call",
            call_id=leg.call_id,
            env=ipc.pack(leg.env),
            contact=ipc.pack(leg.contact),
            attempt=leg.attempt,
            direction=leg.direction,
            answered=leg.answered_at is not None,
        )

    # ---- outbound --------------------------------------------------------------------------------

    def dial(self, event: Event[DialCommand]) -> CallLeg:
        cmd, src = event.payload, event.envelope
        call_id = new_id()
        env = Envelope(
            tenant_id=src.tenant_id,
            campaign_id=src.campaign_id,
            contact_id=src.contact_id,
            call_id=call_id,
            media_node=self.media_node,
        )
        leg = CallLeg(call_id, env, cmd.contact, cmd.attempt, CallLifecycle.OUTBOUND)
        self.legs[call_id] = leg
        self._report_call(leg)
        self._lifecycle(leg, Kind.DIALING)
        try:
            ring_timeout = float(self.book.get(src.campaign_id).limits.ring_timeout_s)
        except KeyError:
            ring_timeout = DEFAULT_RING_TIMEOUT_S
        uri = f"sip:{cmd.contact.phone_e164}@{self.settings.telephony_trunk}"
        assert self.account is not None and self.loop is not None and self.endpoint is not None
        from_uri = ""
        if cmd.caller_id:  # the campaign's number; without it the account id (bot-w<index>) is sent
            from_uri = sip.caller_uri(cmd.caller_id, self.settings.telephony_sip_host, self.endpoint.port)
            if not from_uri:
                log.warning("caller id is not a phone number; sending the account id")
        call = SipCall(self, self.account)
        call.leg, leg.call = leg, call
        try:
            call.makeCall(uri, sip.call_op(from_uri=from_uri))
        except Exception as exc:
            log.error("dial failed", error=str(exc))
            self._finish(leg, code=0, reason=f"dial failed: {exc}", hangup_by="network")
            return leg
        leg.ring_timer = self._later(ring_timeout, self._ring_timeout, leg)
        CALLS_TOTAL.labels("outbound", "dialed").inc()
        return leg

    def _ring_timeout(self, leg: CallLeg) -> None:
        if leg.answered_at is None and not leg.ended:
            log.info("ring timeout, cancelling", call_id=leg.call_id)
            self.hangup(leg, "bot")

    # ---- inbound ---------------------------------------------------------------------------------

    def on_incoming(self, prm: pj.OnIncomingCallParam) -> None:
        assert self.account is not None
        call = SipCall(self, self.account, prm.callId)
        if self.draining:
            call.answer(sip.call_op(503, "Service Unavailable"))
            self._retire(call)
            return
        if self.free_slots() <= 0:
            call.answer(sip.call_op(486, "Busy Here"))
            self._retire(call)
            return
        ci = call.getInfo()
        try:
            campaign = self.book.get(self.settings.telephony_inbound_campaign)
            tenant = campaign.tenant
        except KeyError:
            tenant = ""
        call_id = new_id()
        caller = sip.uri_user(ci.remoteUri)
        env = Envelope(
            tenant_id=tenant,
            campaign_id=self.settings.telephony_inbound_campaign,
            call_id=call_id,
            media_node=self.media_node,
        )
        leg = CallLeg(call_id, env, Contact(phone_e164=caller), 0, CallLifecycle.INBOUND)
        call.leg, leg.call = leg, call
        self.legs[call_id] = leg
        self._report_call(leg)
        call.answer(sip.call_op(180))
        self._lifecycle(leg, Kind.RINGING, sip_code=180)
        leg.rang = True
        call.answer(sip.call_op(200))
        CALLS_TOTAL.labels("inbound", "answered").inc()

    # ---- SIP state -------------------------------------------------------------------------------

    def on_call_state(self, call: SipCall) -> None:
        leg = call.leg
        if leg is None or leg.ended:
            return
        ci = call.getInfo()
        state = ci.state
        if state == pj.PJSIP_INV_STATE_EARLY and not leg.rang and ci.lastStatusCode in (180, 183):
            leg.rang = True
            self._lifecycle(leg, Kind.RINGING, sip_code=ci.lastStatusCode, sip_reason=ci.lastReason)
        elif state == pj.PJSIP_INV_STATE_CONFIRMED and leg.answered_at is None:
            leg.answered_at = time.monotonic()
            if leg.ring_timer:
                self._cancel(leg.ring_timer)
            self._report_call(leg)
            self._lifecycle(leg, Kind.ANSWERED, sample_rate=sip.SAMPLE_RATE, sip_code=200)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            code = ci.lastStatusCode
            if leg.hangup_by:
                by = leg.hangup_by
            elif leg.answered_at is None and (code in (408,) or code >= 500):
                by = "network"
            else:
                by = "customer"
            self._finish(leg, code=int(code), reason=ci.lastReason, hangup_by=by)

    def on_media_state(self, call: SipCall) -> None:
        leg = call.leg
        if leg is None or leg.ended or leg.port is not None:
            return
        assert self.loop is not None
        port = sip.FramePort(
            self.loop,
            f"leg-{leg.call_id[-12:]}",
            on_frame=lambda pcm, at_us, leg=leg: self._on_frame(leg, pcm, at_us),
            on_sent=lambda tag, at_us, leg=leg: self._on_sent(leg, tag, at_us),
        )
        port.queue = leg.playback.frames  # type: ignore[assignment] - Frame has the same pcm/tag shape
        endpointer = vad.Endpointer(
            min_speech_ms=self.settings.telephony_min_speech_ms,
            silence_stop_ms=self.settings.telephony_silence_stop_ms,
            max_utterance_s=self.settings.telephony_utterance_max_s,
        )
        leg.detector = vad.UtteranceDetector(endpointer, threshold=self.settings.telephony_vad_threshold)
        leg.port = port
        port.connect(call)

    def _finish(self, leg: CallLeg, code: int, reason: str, hangup_by: str) -> None:
        if leg.ended:
            return
        leg.ended = True
        reason = leg.end_reason or reason
        if leg.ring_timer:
            self._cancel(leg.ring_timer)
        if leg.detector is not None:
            for utt in leg.detector.flush():
                self._publish_utterance(leg, utt)
        if leg.port is not None:
            leg.port.closed = True
        duration = time.monotonic() - leg.answered_at if leg.answered_at else 0.0
        self._lifecycle(
            leg,
            Kind.ENDED,
            sip_code=code,
            sip_reason=reason,
            answered=leg.answered_at is not None,
            duration_s=round(duration, 3),
            hangup_by=hangup_by,
        )
        CALLS_TOTAL.labels(
            "outbound" if leg.direction == CallLifecycle.OUTBOUND else "inbound", hangup_by
        ).inc()
        self._tell("ended", call_id=leg.call_id)
        log.info("call ended", call_id=leg.call_id, sip_code=code, hangup_by=hangup_by)
        # pjsua objects are freed later, outside their own callback
        self.legs.pop(leg.call_id, None)
        self._retire(leg.call, leg.port)
        leg.call = None
        leg.port = None

    def _retire(self, *objs: Any) -> None:
        kept = [o for o in objs if o is not None]
        self.retired.extend(kept)
        self._later(RELEASE_AFTER_S, self._release, kept)

    def _release(self, objs: list[Any]) -> None:
        """Let go of pjsua objects, except a Call whose pjsua id is in use again.

        pjsua2's `~Call` clears the user data of its id and hangs up whatever call is active on it, and
        pjsua reuses ids (0,1,2,3,0…): freeing an ended call's object while a new call holds the same
        id cuts that new call (CANCEL/BYE) and steals its callbacks. So an object is kept until its id is
        free, and is freed right here, by reference count: nothing may hold it in a reference cycle,
        or the garbage collector frees it later, at any moment.
        """
        keep = [o for o in objs if isinstance(o, pj.Call) and self._id_in_use(o)]
        kept = {id(o) for o in keep}
        for obj in objs:
            if id(obj) in kept:
                continue
            if isinstance(obj, SipCall):
                obj.leg = None
            with contextlib.suppress(ValueError):
                self.retired.remove(obj)
        if keep:
            self._later(RELEASE_AFTER_S, self._release, keep)

    def _id_in_use(self, call: pj.Call) -> bool:
        pj_id = call.getId()
        if pj_id == pj.PJSUA_INVALID_ID:
            return False
        if call.isActive():
            return True
        return any(leg.call is not None and leg.call.getId() == pj_id for leg in self.legs.values())

    def hangup(self, leg: CallLeg, by: str) -> None:
        if leg.ended or leg.call is None:
            return
        leg.hangup_by = leg.hangup_by or by
        try:
            leg.call.hangup(sip.call_op())
        except Exception as exc:
            log.warning("hangup failed", call_id=leg.call_id, error=str(exc))
            self._finish(leg, code=0, reason=f"hangup failed: {exc}", hangup_by=by)

    # ---- media (loop side of FramePort) ----------------------------------------------------------

    def _on_frame(self, leg: CallLeg, pcm: bytes, at_us: int) -> None:
        if leg.ended or leg.detector is None:
            return
        for utt in leg.detector.push(pcm, at_us):
            self._publish_utterance(leg, utt)

    def _publish_utterance(self, leg: CallLeg, utt: vad.Utterance) -> None:
        cause = Envelope()
        cause.CopyFrom(leg.env)
        if utt.last_part:
            cause.marks.append(Mark(stage="telephony.speech_end", at_us=utt.speech_end_us))
        payload = AudioUtterance(
            utterance_id=new_id(),
            pcm=utt.pcm,
            sample_rate=vad.SAMPLE_RATE,
            speech_start_us=utt.speech_start_us,
            speech_end_us=utt.speech_end_us,
            part=utt.part,
            last_part=utt.last_part,
        )
        UTTERANCES_TOTAL.inc()
        self.publish(topics.UTTERANCES, payload, cause)

    def _on_sent(self, leg: CallLeg, tag: tuple[TurnEvent, ...], at_us: int) -> None:
        for ev in tag:
            if ev.kind == "started":
                leg.playing.add(ev.turn_id)
                cause = Envelope()
                cause.CopyFrom(leg.turn_envs.get(ev.turn_id, leg.env))
                cause.marks.append(Mark(stage="telephony.first_audio", at_us=at_us))
                first = leg.turn_first_chunk_us.get(ev.turn_id)
                if first:
                    FIRST_AUDIO_DELAY.observe(max(at_us - first, 0) / 1e6)
                self.publish(topics.LIFECYCLE, self._playback(leg, Kind.PLAYBACK_STARTED, ev.turn_id), cause)
            elif ev.kind == "finished":
                leg.playing.discard(ev.turn_id)
                cause = leg.turn_envs.pop(ev.turn_id, leg.env)
                leg.turn_first_chunk_us.pop(ev.turn_id, None)
                self.publish(topics.LIFECYCLE, self._playback(leg, Kind.PLAYBACK_FINISHED, ev.turn_id), cause)
                if ev.end_call or (leg.hangup_after_playback and leg.playback.idle):
                    self._hangup_soon(leg)

    def _playback(self, leg: CallLeg, kind: int, turn_id: str) -> CallLifecycle:
        return CallLifecycle(
            kind=kind,
            direction=leg.direction,
            contact=leg.contact,  # type: ignore[arg-type]
            attempt=leg.attempt,
            turn_id=turn_id,
        )

    def _hangup_soon(self, leg: CallLeg) -> None:
        leg.hangup_by = leg.hangup_by or "bot"
        self._later(HANGUP_GRACE_S, self.hangup, leg, "bot")

    # ---- inbox -----------------------------------------------------------------------------------

    def play(self, leg: CallLeg, event: Event[TtsAudio]) -> None:
        chunk = event.payload
        pcm = chunk.pcm
        if chunk.sample_rate and chunk.sample_rate != vad.SAMPLE_RATE and pcm:
            pcm = audio.resample_pcm16(pcm, chunk.sample_rate, vad.SAMPLE_RATE)
        if chunk.turn_id not in leg.turn_envs:
            leg.turn_envs[chunk.turn_id] = event.envelope
            leg.turn_first_chunk_us[chunk.turn_id] = sip.now_us()
        leg.playback.add(chunk.turn_id, pcm, chunk.final, chunk.end_call)

    def command(self, leg: CallLeg, event: Event[CallCommand]) -> None:
        cmd = event.payload
        if cmd.kind == CallCommand.HANGUP:
            if cmd.immediate or leg.playback.idle:
                leg.playback.stop()
                self.hangup(leg, "bot")
            else:
                leg.hangup_after_playback = True
        elif cmd.kind == CallCommand.STOP_PLAYBACK:
            for turn_id in leg.playback.stop():
                if turn_id in leg.playing:
                    leg.playing.discard(turn_id)
                    payload = self._playback(leg, Kind.PLAYBACK_FINISHED, turn_id)
                    self.publish(topics.LIFECYCLE, payload, leg.turn_envs.pop(turn_id, event.envelope))
            if leg.hangup_after_playback:  # the audio the HANGUP waited for will never finish now
                self._hangup_soon(leg)
        else:
            log.warning("call command not supported by this worker", kind=CallCommand.Kind.Name(cmd.kind))

    def on_inbox(self, event: Event[Any]) -> None:
        if event.envelope.occurred_at_us and event.envelope.occurred_at_us < self.started_us:
            return  # left over from a previous run of this worker
        leg = self.legs.get(event.envelope.call_id)
        if leg is None or leg.ended:
            return
        if isinstance(event.payload, TtsAudio):
            self.play(leg, event)
        elif isinstance(event.payload, CallCommand):
            self.command(leg, event)


def build_worker(settings: Settings, index: int, sip_port: int, ipc_out: BinaryIO) -> Service:
    svc = Service("telephony", settings)
    worker = MediaWorker(settings, svc, index, sip_port, ipc_out)
    svc.on_start(worker.start)
    svc.on_drain(worker.drain)
    svc.on_stop(worker.stop)

    @svc.bus.on(worker.inbox, TtsAudio, CallCommand, group=None)
    async def inbox(event: Event[Any]) -> None:
        worker.on_inbox(event)

    return svc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.telephony.worker")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--sip-port", type=int, default=0)
    args = parser.parse_args(argv)
    # stdout is the supervisor's pipe: keep a private handle, send everything else printed to stderr
    ipc_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    settings = load(Settings)
    settings.http_port = 0
    observability.configure_logging("telephony", settings.log_level)
    observability.configure_tracing("telephony")
    structlog.contextvars.bind_contextvars(worker=args.index)
    code = 1
    try:
        asyncio.run(build_worker(settings, args.index, args.sip_port, ipc_out).run())
        code = 0
    except BaseException:
        log.exception("media worker stopped with an error")
    finally:
        sip.exit_now(code)  # skip finalizers: see voicebot.sip.exit_now


if __name__ == "__main__":
    main()
