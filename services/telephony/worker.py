"""A media worker process: one pjsua2 endpoint carrying up to 4 calls (the wheel's hard cap).

It dials what the supervisor hands it, answers inbound calls while it has a free slot, end-points the
customer's speech into `audio.utterances`, and plays the bot's audio from its own inbox topic as it
arrives. SIP callbacks run on the event loop's thread (libHandleEvents is polled from asyncio); frame
callbacks run on the media thread and only move bytes (voicebot.sip.FramePort). Once a tick the loop
takes every call's received frames and runs one Silero VAD batch over all of them (`_media_tick`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pjsua2 as pj
import structlog
from google.protobuf.message import Message
from prometheus_client import Counter, Histogram

from services.telephony import amd, bargein, dtmf, ipc
from services.telephony.app import Settings
from services.telephony.node_vad import VadClient
from services.telephony.playback import PlaybackQueue, TurnEvent
from voicebot import audio, observability, recordings, sip, topics, vad
from voicebot.broker import create_topics
from voicebot.bus import Event, decode, new_id
from voicebot.campaigns import Campaign, CampaignBook
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
BARGE_INS = Counter(
    "voicebot_telephony_barge_ins_total", "bot playback paused by customer speech", ["result"]
)
BARGE_IN_PAUSE = Histogram(
    "voicebot_telephony_barge_in_pause_seconds",
    "customer speech onset → bot playback paused",
    buckets=(0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5),
)
DTMF_DIGITS = Counter("voicebot_telephony_dtmf_digits_total", "keypad digits received", ["method"])
DTMF_METHODS = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc2833", pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}

HANGUP_GRACE_S = 0.3  # let the last frames leave the jitter/RTP path before BYE
DEFAULT_RING_TIMEOUT_S = 30.0
RELEASE_AFTER_S = 2.0
SHUTDOWN_REASON = "node shutting down"
RECORDING_CLOSE_S = 2.0  # longest wait for pjmedia to finish a recording's file
INBOX_CHECK = "inbox check"  # a worker's message to itself: its inbox delivers, it may take calls
DEFER_MAX_S = 20.0  # a command waiting for a reply that never plays runs after this long
EXTENSION_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
PJSUA_MAX_CALLS = 4  # compiled into the pjsua2 wheel (notes/pjsua2.md)
FRAME_MS = int(vad.CHUNK_MS)  # media port frames of one VAD chunk (32 ms): no re-chunking, fewer callbacks
TICK_S = 0.02  # SIP events and received audio, while calls are up (barge-in waits at most this long)
IDLE_TICK_S = 0.05  # with no call: SIP events only
Kind = CallLifecycle.Kind


@dataclass
class Transfer:
    """Handing a call to a human: blind (REFER: the customer's side calls the agent) or warm (the bot
    calls the agent with a summary, then bridges the two)."""

    target: str
    mode: str
    summary: str
    ring_timeout_s: float
    started: bool = False
    done: bool = False
    agent: SipCall | None = None  # warm: the bot's own call to the agent
    agent_audio: Any = None
    timer: asyncio.TimerHandle | None = None


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
    playback: PlaybackQueue = field(default_factory=lambda: PlaybackQueue(frame_bytes=vad.CHUNK * 2))
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
    campaign: Campaign | None = None
    called_number: str = ""  # inbound: what the customer dialled (the IVR routes on it)
    barge: bargein.BargeIn | None = None
    amd: amd.AmdDetector | None = None  # outbound, campaign detects voicemail: who answered?
    beep_deadline_us: int = 0  # a machine answered and a message will be left: its beep is awaited
    amd_decided_us: int = 0  # speech that began before the verdict was the answering party's greeting
    cut_onset_us: int = 0  # the last barge-in: replies decided before it are stale
    in_speech: bool = False
    turn_started_us: dict[str, int] = field(default_factory=dict)
    collector: dtmf.Collector | None = None
    collect_timer: asyncio.TimerHandle | None = None
    recorder: Any = None  # pj.AudioMediaRecorder: its WAV header is written when it is freed
    recording: Path | None = None
    audio: Any = None  # the call's pj.AudioMedia once media is up (bridging, recording)
    transfer: Transfer | None = None
    played: set[str] = field(default_factory=set)  # replies that finished (or were cut) on this call
    deferred: list[Event[CallCommand]] = field(default_factory=list)  # waiting for `after_turn_id`
    bridged: bool = False  # customer and agent talk to each other: the bot only listens for the end
    vad_stream: int = 0  # this call's stream at the node's VAD


def barge_rule(campaign: Campaign | None) -> bargein.Rule:
    if campaign is None:
        return bargein.Rule()
    rule = campaign.barge_in
    return bargein.Rule(rule.enabled, min_speech_ms=rule.min_speech_ms, resume_after_ms=rule.resume_after_ms)


class SipCall(pj.Call):
    def __init__(
        self, worker: MediaWorker, account: pj.Account, pj_call_id: int = pj.PJSUA_INVALID_ID
    ) -> None:
        super().__init__(account, pj_call_id)
        self.worker = worker
        self.leg: CallLeg | None = None
        self.agent_of: CallLeg | None = None  # set on the bot's call to an agent (warm transfer)

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            if self.agent_of is not None:
                self.worker.on_agent_state(self)
            else:
                self.worker.on_call_state(self)
        except Exception:
            sip.CALLBACK_ERRORS.labels("call_state").inc()
            log.exception("call state handler failed")

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        try:
            if self.agent_of is not None:
                self.worker.on_agent_media(self)
            else:
                self.worker.on_media_state(self)
        except Exception:
            sip.CALLBACK_ERRORS.labels("media_state").inc()
            log.exception("media state handler failed")

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        try:
            prm.cont = self.worker.on_transfer_status(self, prm.statusCode, prm.reason, prm.finalNotify)
        except Exception:
            sip.CALLBACK_ERRORS.labels("transfer_status").inc()
            log.exception("transfer status handler failed")

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        try:
            self.worker.on_dtmf(self, prm.digit, DTMF_METHODS.get(prm.method, "rfc2833"))
        except Exception:
            sip.CALLBACK_ERRORS.labels("dtmf").inc()
            log.exception("dtmf handler failed")


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
        self,
        settings: Settings,
        svc: Service,
        index: int,
        sip_port: int,
        ipc_out: BinaryIO,
        vad_sock: socket.socket | None = None,
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
        self.free_ports: list[sip.FramePort] = []  # media ports of ended calls, for the next calls
        self.started_us = sip.now_us()
        self.endpoint: sip.SipEndpoint | None = None
        self.account: BotAccount | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.outbox: asyncio.Queue[tuple[str, Message, Envelope]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: dict[object, asyncio.TimerHandle] = {}
        self.draining = False
        self._inbox_seen = asyncio.Event()
        self._inbox_nonce = ""
        # the node's VAD (supervisor) decides for every call; without it this worker runs Silero itself
        self.vad: VadClient[tuple[CallLeg, bytes, int]] | None = (
            VadClient(vad_sock, self._decided) if vad_sock is not None else None
        )
        self._streams = 0

    # ---- process ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.vad is None:
            await asyncio.to_thread(vad.load_model)
        else:
            self.vad.start()
        await create_topics(self.settings.kafka_bootstrap, {self.inbox: 1})
        host = self.settings.telephony_sip_host
        self.endpoint = sip.create_endpoint(
            self.sip_port, host=host, max_calls=PJSUA_MAX_CALLS, quality=self.settings.telephony_media_quality
        )
        self.account = BotAccount(self)
        self.account.create(sip.account_config(host, self.endpoint.port, user=f"bot-w{self.index}"))
        self._tasks.append(asyncio.create_task(self._media_loop()))
        self._tasks.append(asyncio.create_task(self._send_outbox()))
        self._tasks.append(asyncio.create_task(self._read_supervisor()))
        self._tasks.append(asyncio.create_task(self._announce_ready()))
        self._tasks.append(asyncio.create_task(self._report_stats()))
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
        if self.vad is not None:
            self.vad.stop()

    def _forget_all(self) -> None:
        """Drop every pjsua object (the library is destroyed next); calls cut here are reported by the
        supervisor, which sees this worker exit."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for leg in self.legs.values():
            if leg.port is not None:
                leg.port.close()
            if leg.call is not None:
                leg.call.leg = None
            leg.call, leg.port, leg.detector, leg.recorder, leg.audio = None, None, None, None, None
            if leg.transfer is not None:
                leg.transfer.agent, leg.transfer.agent_audio = None, None
        self.legs.clear()
        self.retired.clear()
        self.free_ports.clear()
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
        """Ready once the inbox really delivers: a consumer of a topic created a moment ago may not be
        assigned yet (it starts at the latest offset), and a reply sent before that would be lost."""
        while not self.svc.ready:
            await asyncio.sleep(0.02)
        nonce = new_id()
        self._inbox_seen = asyncio.Event()
        self._inbox_nonce = nonce
        probe = CallCommand(reason=INBOX_CHECK, target=nonce)
        while not self._inbox_seen.is_set():
            await self.svc.bus.publish(self.inbox, probe, cause=Envelope(media_node=self.media_node))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._inbox_seen.wait(), 1.0)
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
            elif msg and msg["op"] == "retire":
                self._tasks.append(asyncio.create_task(self._retire_when_idle()))
            elif msg and msg["op"] == "inbox":
                self._on_inbox_line(msg)
        log.info("supervisor closed the pipe; stopping")
        self.svc.stop()

    def _on_inbox_line(self, msg: dict[str, Any]) -> None:
        try:
            event = decode(ipc.unpack_bytes(msg["event"]), [TtsAudio, CallCommand])
        except Exception as exc:
            log.warning("bad inbox event from the supervisor", error=str(exc))
            return
        self.on_inbox(event)

    async def _retire_when_idle(self) -> None:
        """The pool shrinks: no new call (dials "draining", INVITEs 503); exit once the last call ends."""
        self.draining = True
        self._tell("draining")
        while any(not leg.ended for leg in self.legs.values()):
            await asyncio.sleep(0.1)
        log.info("media worker retiring")
        self.svc.stop()

    async def _report_stats(self) -> None:
        """Frame timing for the supervisor, which exposes the node's total (sip.FrameTiming)."""
        while True:
            await asyncio.sleep(1.0)
            self._tell("stats", frames=sip.FRAME_TIMING.snapshot())

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

    def campaign(self, campaign_id: str) -> Campaign | None:
        try:
            return self.book.get(campaign_id)
        except KeyError:
            return None

    def free_slots(self) -> int:
        """Customer calls this worker may still take: its slots, and pjsua's 4 calls less any warm
        transfer's call to an agent."""
        live = sum(1 for leg in self.legs.values() if not leg.ended)
        return min(self.settings.telephony_calls_per_worker - live, self._pjsua_free())

    def _pjsua_free(self) -> int:
        live = [leg for leg in self.legs.values() if not leg.ended]
        agents = sum(1 for leg in live if leg.transfer and leg.transfer.agent is not None)
        return PJSUA_MAX_CALLS - len(live) - agents

    def _lifecycle(self, leg: CallLeg, kind: int, cause: Envelope | None = None, **fields: Any) -> None:
        """One call event, caused by the call itself or by a reply's envelope (`cause`: its timeline)."""
        payload = CallLifecycle(
            kind=kind,
            direction=leg.direction,
            contact=leg.contact,
            attempt=leg.attempt,
            **fields,  # type: ignore[arg-type]
        )
        self.publish(topics.LIFECYCLE, payload, cause or leg.env)

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
        leg.campaign = self.campaign(src.campaign_id)
        self.legs[call_id] = leg
        self._report_call(leg)
        self._lifecycle(leg, Kind.DIALING)
        ring_timeout = float(leg.campaign.limits.ring_timeout_s) if leg.campaign else DEFAULT_RING_TIMEOUT_S
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
            self._refuse_soon(call, 503, "Service Unavailable")
            return
        if self.free_slots() <= 0:
            self._refuse_soon(call, 486, "Busy Here")
            return
        ci = call.getInfo()
        campaign = self.campaign(self.settings.telephony_inbound_campaign)
        call_id = new_id()
        caller = sip.uri_user(ci.remoteUri)
        env = Envelope(
            tenant_id=campaign.tenant if campaign else "",
            campaign_id=campaign.id if campaign else "",
            call_id=call_id,
            media_node=self.media_node,
        )
        leg = CallLeg(call_id, env, Contact(phone_e164=caller), 0, CallLifecycle.INBOUND)
        leg.campaign = campaign
        leg.called_number = sip.request_user(prm.rdata.wholeMsg)
        call.leg, leg.call = leg, call
        self.legs[call_id] = leg
        self._report_call(leg)
        call.answer(sip.call_op(180))
        self._lifecycle(leg, Kind.RINGING, sip_code=180)
        leg.rang = True
        call.answer(sip.call_op(200))
        CALLS_TOTAL.labels("inbound", "answered").inc()

    def _refuse_soon(self, call: SipCall, code: int, reason: str) -> None:
        """Refuse an INVITE right after onIncomingCall returns: a final answer given inside it aborts the
        process (pjsua's pjsip_rx_data_free_cloned assertion) when the INVITE is over ~3.8 kB."""

        def refuse() -> None:
            try:
                call.answer(sip.call_op(code, reason))
            except Exception as exc:  # the caller gave up meanwhile
                log.debug("refusal not sent", error=str(exc))
            self._retire(call)

        assert self.loop is not None
        self.loop.call_soon(refuse)

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
            self._answered(leg)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            code = ci.lastStatusCode
            if leg.hangup_by:
                by = leg.hangup_by
            elif leg.answered_at is None and (code in (408,) or code >= 500):
                by = "network"
            else:
                by = "customer"
            self._finish(leg, code=int(code), reason=ci.lastReason, hangup_by=by)

    def _answered(self, leg: CallLeg) -> None:
        if leg.direction == CallLifecycle.OUTBOUND and leg.campaign and leg.campaign.voicemail.detect:
            leg.amd = amd.AmdDetector(answered_us=sip.now_us())
        self._lifecycle(
            leg, Kind.ANSWERED, sample_rate=sip.SAMPLE_RATE, sip_code=200, called_number=leg.called_number
        )

    def route(self, leg: CallLeg, cmd: CallCommand) -> None:
        """The IVR bound an inbound call to a campaign: its bot flow starts with a fresh ANSWERED."""
        campaign = self.campaign(cmd.target)
        if leg.env.campaign_id or campaign is None:
            log.warning("route ignored", call_id=leg.call_id, reason="already routed or unknown campaign")
            return
        leg.env.campaign_id, leg.env.tenant_id, leg.campaign = campaign.id, campaign.tenant, campaign
        leg.collector = None
        leg.barge = bargein.BargeIn(barge_rule(campaign))
        if campaign.recording.enabled and leg.recorder is None and leg.audio is not None and leg.port:
            self._start_recording(leg, leg.audio, leg.port)
        self._report_call(leg)
        self._answered(leg)

    def on_media_state(self, call: SipCall) -> None:
        leg = call.leg
        if leg is None or leg.ended or leg.port is not None:
            return
        assert self.loop is not None
        on_sent = functools.partial(self._on_sent, leg)
        if self.free_ports:
            port = self.free_ports.pop()
            port.reopen(on_sent)
        else:
            port = sip.FramePort(self.loop, f"port-{self._streams}", on_sent=on_sent, frame_ms=FRAME_MS)
        port.queue = leg.playback.frames  # type: ignore[assignment] - Frame has the same pcm/tag shape
        endpointer = vad.Endpointer(
            min_speech_ms=self.settings.telephony_min_speech_ms,
            silence_stop_ms=self.settings.telephony_silence_stop_ms,
            max_utterance_s=self.settings.telephony_utterance_max_s,
        )
        leg.detector = vad.UtteranceDetector(
            endpointer,
            threshold=self.settings.telephony_vad_threshold,
            on_chunk=lambda pcm, speech, end_us, leg=leg: self._on_chunk(leg, pcm, speech, end_us),
        )
        leg.barge = bargein.BargeIn(barge_rule(leg.campaign))
        self._streams += 1
        leg.vad_stream = self._streams
        leg.port = port
        leg.audio = port.connect(call)
        if leg.campaign is not None and leg.campaign.recording.enabled:
            self._start_recording(leg, leg.audio, port)

    def _start_recording(self, leg: CallLeg, customer: pj.AudioMedia, bot: sip.FramePort) -> None:
        """Both legs mixed into one WAV by the conference bridge (the customer's audio and ours)."""
        path = recordings.path_for(
            self.settings.telephony_recordings_dir, leg.env.tenant_id, leg.env.campaign_id, leg.call_id
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            recorder = pj.AudioMediaRecorder()
            recorder.createRecorder(str(path))
            customer.startTransmit(recorder)
            bot.add_sink(recorder)
        except Exception as exc:  # the call goes on unrecorded; the missing RECORDING_READY shows it
            log.error("recording failed to start", call_id=leg.call_id, error=str(exc))
            return
        leg.recorder, leg.recording = recorder, path

    def _close_recording(self, leg: CallLeg) -> None:
        """Free the recorder (the media clock then completes the file), then tell the CRM where it is."""
        if leg.recorder is None or leg.recording is None:
            return
        leg.recorder = None
        self._recording_ready(leg, time.monotonic() + RECORDING_CLOSE_S)

    def _recording_ready(self, leg: CallLeg, deadline: float) -> None:
        assert leg.recording is not None
        if not recordings.is_complete(leg.recording) and time.monotonic() < deadline:
            self._later(0.02, self._recording_ready, leg, deadline)
            return
        self._lifecycle(leg, Kind.RECORDING_READY, recording_uri=leg.recording.as_uri())

    def _finish(self, leg: CallLeg, code: int, reason: str, hangup_by: str) -> None:
        if leg.ended:
            return
        leg.ended = True
        reason = leg.end_reason or reason
        for timer in (leg.ring_timer, leg.collect_timer):
            if timer:
                self._cancel(timer)
        if leg.detector is not None:
            if self.vad is None:
                self._hear([leg])  # the last frames (the node's answer would come after the end)
            else:
                self.vad.forget(leg.vad_stream)
            for utt in leg.detector.flush():  # what was still being said
                self._publish_utterance(leg, utt)
        if leg.port is not None:
            leg.port.close()
        if leg.recorder is not None:  # freed outside this SIP callback
            self._later(0.0, self._close_recording, leg)
        if leg.transfer is not None:
            self._end_transfer(leg)
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
        leg.audio = None

    def _retire(self, *objs: Any) -> None:
        kept = [o for o in objs if o is not None]
        self.retired.extend(kept)
        self._later(RELEASE_AFTER_S, self._release, kept)

    def _release(self, objs: list[Any]) -> None:
        """Let go of pjsua objects, except a Call whose pjsua id is in use again; a media port goes back
        to `free_ports` (see voicebot.sip.FramePort: a port is never destroyed while calls run).

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
            if isinstance(obj, sip.FramePort):
                self.free_ports.append(obj)
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

    async def _media_loop(self) -> None:
        """SIP events, then every call's audio, once a tick (no wake-up per frame)."""
        assert self.endpoint is not None
        ep = self.endpoint.ep
        while True:
            sip.handle_events(ep)
            if self.legs:
                try:
                    self._media_tick()
                except Exception:  # one bad frame or call never stops the others' audio
                    sip.CALLBACK_ERRORS.labels("media_tick").inc()
                    log.exception("media tick failed")
            await asyncio.sleep(TICK_S if self.legs else IDLE_TICK_S)

    def _media_tick(self) -> None:
        """The frames every call received since the last tick, through one VAD batch; a port whose
        reply has played stops sending."""
        for leg in self.legs.values():
            port = leg.port
            if port is not None and port.sending and not port.queue and leg.playback.idle:
                port.send(False)
        self._hear(list(self.legs.values()))

    def _hear(self, legs: list[CallLeg]) -> None:
        """What these calls' customers said since the last look: VAD decisions, utterances."""
        frames: list[tuple[vad.UtteranceDetector, bytes, int]] = []
        by_detector: dict[int, CallLeg] = {}
        for leg in legs:
            if leg.port is None or leg.detector is None:
                continue
            received = leg.port.take()
            if leg.bridged:  # customer and agent talk: the bot does not listen
                continue
            by_detector[id(leg.detector)] = leg
            frames.extend((leg.detector, pcm, at_us) for pcm, at_us in received)
        if self.vad is None:
            for detector, utt in vad.detect(frames):
                self._publish_utterance(by_detector[id(detector)], utt)
            return
        chunks = vad.chunks_of(frames)
        if chunks:
            self.vad.send(
                [(by_detector[id(det)].vad_stream, pcm) for det, pcm, _ in chunks],
                [(by_detector[id(det)], pcm, end_us) for det, pcm, end_us in chunks],
            )

    def _decided(self, items: list[tuple[CallLeg, bytes, int]], probs: list[float]) -> None:
        """The node's VAD answered: each chunk's decision, in the order its call received them."""
        for (leg, pcm, end_us), prob in zip(items, probs, strict=True):
            if leg.ended or leg.detector is None or leg.bridged:
                continue
            for utt in leg.detector.decide(pcm, prob, end_us):
                self._publish_utterance(leg, utt)

    def _on_chunk(self, leg: CallLeg, pcm: bytes, speech: bool, end_us: int) -> None:
        """Every 32 ms VAD decision: speech onsets, barge-in."""
        assert leg.detector is not None
        started = leg.detector.endpointer.in_speech
        if started and not leg.in_speech:
            self._lifecycle(leg, Kind.SPEECH_STARTED, speech_start_us=leg.detector.endpointer.speech_start_us)
        leg.in_speech = started
        if leg.amd is not None:
            self._detect_machine(leg, leg.amd, pcm, speech, end_us)
        if leg.barge is None or leg.port is None:
            return
        act = leg.barge.push(speech, vad.CHUNK_MS, end_us, playing=bool(leg.playing))
        if act is bargein.Act.PAUSE:
            leg.port.paused = True
            paused_after_s = max(sip.now_us() - leg.barge.run_onset_us, 0) / 1e6  # this speech run's
            BARGE_IN_PAUSE.observe(paused_after_s)
            log.info(
                "playback paused: customer speaks", call_id=leg.call_id, after_ms=round(paused_after_s * 1000)
            )
        elif act is bargein.Act.RESUME:
            leg.port.paused = False
            BARGE_INS.labels("resumed").inc()
        elif act is bargein.Act.CUT:
            BARGE_INS.labels("cut").inc()
            leg.cut_onset_us = leg.barge.onset_us
            self._stop_playback(leg, leg.env, barged_at_us=leg.barge.onset_us)

    def _detect_machine(
        self, leg: CallLeg, detector: amd.AmdDetector, pcm: bytes, speech: bool, end_us: int
    ) -> None:
        """The verdict (and a revision to MACHINE on a late beep), then the beep a message waits for."""
        if not detector.done:
            verdict = detector.push(pcm, speech, end_us)
            if verdict is not None:
                leg.amd_decided_us = leg.amd_decided_us or end_us
                log.info(
                    "answering party", call_id=leg.call_id, amd=verdict.answer.name, detail=verdict.detail
                )
                self._lifecycle(
                    leg,
                    Kind.AMD_VERDICT,
                    amd=CallLifecycle.Amd.Value(verdict.answer.name),
                    amd_reason=verdict.reason,
                )
                voicemail = leg.campaign.voicemail if leg.campaign else None
                if (
                    verdict.answer is amd.Answer.MACHINE
                    and voicemail
                    and voicemail.on_machine == "leave_message"
                ):
                    leg.beep_deadline_us = end_us + int(voicemail.max_wait_for_beep_s * 1e6)
            return
        if not leg.beep_deadline_us:
            leg.amd = None
            return
        beep = detector.beep.push(pcm, end_us)
        if beep is not None or end_us >= leg.beep_deadline_us:
            leg.beep_deadline_us, leg.amd = 0, None
            reason = f"{beep.hz:.0f} Hz tone" if beep else "no beep heard"
            self._lifecycle(leg, Kind.BEEP, amd=CallLifecycle.MACHINE, amd_reason=reason)

    def _publish_utterance(self, leg: CallLeg, utt: vad.Utterance) -> None:
        if (
            leg.barge is not None
            and utt.last_part
            and leg.barge.is_backchannel(utt.speech_start_us, utt.speech_end_us)
        ):
            log.info("backchannel during playback ignored", call_id=leg.call_id)
            return
        undecided = leg.amd is not None and leg.amd.verdict is None
        if undecided or (leg.amd_decided_us and utt.speech_start_us < leg.amd_decided_us):
            log.info("answering party's greeting is not a turn", call_id=leg.call_id)
            return
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
                leg.turn_started_us[ev.turn_id] = at_us
                cause = Envelope()
                cause.CopyFrom(leg.turn_envs.get(ev.turn_id, leg.env))
                cause.marks.append(Mark(stage="telephony.first_audio", at_us=at_us))
                first = leg.turn_first_chunk_us.get(ev.turn_id)
                if first:
                    FIRST_AUDIO_DELAY.observe(max(at_us - first, 0) / 1e6)
                self._lifecycle(leg, Kind.PLAYBACK_STARTED, cause, turn_id=ev.turn_id)
            elif ev.kind == "finished":
                leg.playing.discard(ev.turn_id)
                leg.turn_started_us.pop(ev.turn_id, None)
                self._played(leg, ev.turn_id)
                cause = leg.turn_envs.pop(ev.turn_id, leg.env)
                leg.turn_first_chunk_us.pop(ev.turn_id, None)
                self._lifecycle(leg, Kind.PLAYBACK_FINISHED, cause, turn_id=ev.turn_id)
                if ev.end_call or (leg.hangup_after_playback and leg.playback.idle):
                    self._hangup_soon(leg)
                elif leg.transfer is not None and not leg.transfer.started and leg.playback.idle:
                    self._start_transfer(leg)

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
            decided_us = next((m.at_us for m in event.envelope.marks if m.stage == "dialogue.out"), 0)
            if leg.cut_onset_us and 0 < decided_us < leg.cut_onset_us:
                log.info("reply decided before the customer interrupted: dropped", call_id=leg.call_id)
                leg.playback.drop(chunk.turn_id)
                self._played(leg, chunk.turn_id)
                return
            leg.turn_envs[chunk.turn_id] = event.envelope
            leg.turn_first_chunk_us[chunk.turn_id] = sip.now_us()
        if leg.playback.add(chunk.turn_id, pcm, chunk.final, chunk.end_call) and leg.port is not None:
            leg.port.send(True)

    def _played(self, leg: CallLeg, turn_id: str) -> None:
        """A reply is over: commands that waited for it run now."""
        leg.played.add(turn_id)
        ready = [e for e in leg.deferred if e.payload.after_turn_id in leg.played]
        for event in ready:
            leg.deferred.remove(event)
            self.command(leg, event)

    def _run_deferred(self, leg: CallLeg, event: Event[CallCommand]) -> None:
        """The reply it waited for never played (lost on the way): act anyway."""
        if event in leg.deferred and not leg.ended:
            leg.deferred.remove(event)
            leg.played.add(event.payload.after_turn_id)
            self.command(leg, event)

    def command(self, leg: CallLeg, event: Event[CallCommand]) -> None:
        cmd = event.payload
        if cmd.after_turn_id and cmd.after_turn_id not in leg.played:
            leg.deferred.append(event)
            self._later(DEFER_MAX_S, self._run_deferred, leg, event)
            return
        if cmd.kind == CallCommand.HANGUP:
            if cmd.immediate or leg.playback.idle:
                leg.playback.stop()
                self.hangup(leg, "bot")
            else:
                leg.hangup_after_playback = True
        elif cmd.kind == CallCommand.STOP_PLAYBACK:
            self._stop_playback(leg, event.envelope)
        elif cmd.kind == CallCommand.TRANSFER:
            self.transfer(leg, cmd)
        elif cmd.kind == CallCommand.ROUTE:
            self.route(leg, cmd)
        elif cmd.kind == CallCommand.SEND_DTMF:
            self.send_dtmf(leg, cmd.digits, cmd.method or "rfc2833")
        elif cmd.kind == CallCommand.COLLECT_DTMF:
            leg.collector = dtmf.Collector(cmd.max_digits, cmd.timeout_ms or 3000)
        else:
            log.warning("call command not supported by this worker", kind=CallCommand.Kind.Name(cmd.kind))

    def _stop_playback(self, leg: CallLeg, cause: Envelope, barged_at_us: int = 0) -> None:
        """Drop the queued audio; with `barged_at_us`, the customer cut it (BARGE_IN tells upstream to
        drop what is still being generated for it)."""
        now = sip.now_us()
        if leg.port is not None:
            leg.port.paused = False
        for turn_id in leg.playback.stop():
            self._played(leg, turn_id)
            if turn_id not in leg.playing:
                continue
            leg.playing.discard(turn_id)
            turn_env = leg.turn_envs.pop(turn_id, cause)
            started = leg.turn_started_us.pop(turn_id, now)
            if barged_at_us:
                played_ms = max(0, (barged_at_us - started) // 1000)
                self._lifecycle(
                    leg,
                    Kind.BARGE_IN,
                    turn_env,
                    turn_id=turn_id,
                    played_ms=played_ms,
                    speech_start_us=barged_at_us,
                )
            self._lifecycle(leg, Kind.PLAYBACK_FINISHED, turn_env, turn_id=turn_id, interrupted=True)
        if leg.hangup_after_playback:  # the audio the HANGUP waited for will never finish now
            self._hangup_soon(leg)

    # ---- transfer to a human ---------------------------------------------------------------------

    def transfer(self, leg: CallLeg, cmd: CallCommand) -> None:
        """Starts once the reply before it ("connecting you now") has played."""
        target = self.agent_uri(cmd.target)
        if leg.transfer is not None or not target:
            log.warning("transfer refused", call_id=leg.call_id, reason="bad target or already transferring")
            return
        ring = leg.campaign.transfer.ring_timeout_s if leg.campaign else 20
        leg.transfer = Transfer(target, cmd.mode or "blind", cmd.summary, float(ring))
        if leg.playback.idle:
            self._start_transfer(leg)

    def agent_uri(self, target: str) -> str:
        """A SIP URI as is; an extension ("sales-queue") at the agent trunk; "" for anything else."""
        if target.startswith(("sip:", "sips:")) and not any(c.isspace() for c in target):
            return target
        if EXTENSION_RE.match(target):
            return f"sip:{target}@{self.settings.telephony_agent_trunk or self.settings.telephony_trunk}"
        return ""

    def _start_transfer(self, leg: CallLeg) -> None:
        t = leg.transfer
        assert t is not None and self.account is not None
        if leg.call is None or leg.ended or t.started:
            return
        t.started = True
        t.timer = self._later(t.ring_timeout_s + 5, self._transfer_timeout, leg)
        if t.mode == "warm" and self._pjsua_free() > 0:
            agent = SipCall(self, self.account)
            agent.agent_of, t.agent = leg, agent
            headers = {"X-Voicebot-Call": leg.call_id, "X-Voicebot-Summary": t.summary}
            try:
                agent.makeCall(t.target, sip.call_op(headers=headers))
            except Exception as exc:
                self._transfer_failed(leg, 0, f"agent call failed: {exc}")
            return
        t.mode = "blind"  # also a warm transfer with no free slot for the agent's call
        try:
            leg.call.xfer(t.target, sip.call_op())
        except Exception as exc:
            self._transfer_failed(leg, 0, f"REFER failed: {exc}")

    def on_transfer_status(self, call: SipCall, code: int, reason: str, final: bool) -> bool:
        """NOTIFYs about a blind transfer; returns whether more are wanted."""
        leg = call.leg
        if leg is None or leg.ended or leg.transfer is None or leg.transfer.done:
            return False
        if 200 <= code < 300:
            self._transferred(leg, Kind.TRANSFERRED)
            leg.end_reason = "transferred"
            self.hangup(leg, "bot")
            return False
        if code >= 300:
            self._transfer_failed(leg, code, reason)
            return False
        return not final

    def on_agent_state(self, agent: SipCall) -> None:
        leg = agent.agent_of
        if leg is None or leg.transfer is None:
            return
        ci = agent.getInfo()
        if ci.state != pj.PJSIP_INV_STATE_DISCONNECTED:
            return
        agent.agent_of = None
        t = leg.transfer
        t.agent, t.agent_audio = None, None
        self._retire(agent)
        if not leg.bridged:
            self._transfer_failed(leg, int(ci.lastStatusCode), ci.lastReason)
        elif not leg.ended:  # the agent hung up after talking with the customer: the call is over
            self.hangup(leg, "agent")

    def on_agent_media(self, agent: SipCall) -> None:
        """The agent answered: bridge the two calls in the conference (and into the recording)."""
        leg = agent.agent_of
        if leg is None or leg.transfer is None or leg.bridged or leg.ended or leg.audio is None:
            return
        ci = agent.getInfo()
        for i, media in enumerate(ci.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                agent_audio = agent.getAudioMedia(i)
                break
        else:
            return
        agent_audio.startTransmit(leg.audio)
        leg.audio.startTransmit(agent_audio)
        if leg.recorder is not None:
            agent_audio.startTransmit(leg.recorder)
        leg.transfer.agent_audio = agent_audio
        leg.bridged = True
        self._transferred(leg, Kind.BRIDGED)

    def _transferred(self, leg: CallLeg, kind: int) -> None:
        t = leg.transfer
        assert t is not None
        t.done = True
        if t.timer:
            self._cancel(t.timer)
        self._lifecycle(leg, kind, transfer_target=t.target, transfer_mode=t.mode)

    def _transfer_failed(self, leg: CallLeg, code: int, reason: str) -> None:
        """Nobody took the call: the customer is still with the bot, which says so (dialogue)."""
        t = leg.transfer
        if t is None or t.done or leg.ended:
            return
        t.done = True
        if t.timer:
            self._cancel(t.timer)
        if t.agent is not None:
            with contextlib.suppress(Exception):
                t.agent.hangup(sip.call_op())
        log.info("transfer failed", call_id=leg.call_id, sip_code=code, reason=reason)
        self._lifecycle(
            leg,
            Kind.TRANSFER_FAILED,
            transfer_target=t.target,
            transfer_mode=t.mode,
            sip_code=code,
            sip_reason=reason,
        )
        leg.transfer = None

    def _transfer_timeout(self, leg: CallLeg) -> None:
        self._transfer_failed(leg, 408, "agent did not answer")

    def _end_transfer(self, leg: CallLeg) -> None:
        """The customer's call ended: the bot's call to the agent ends with it."""
        t = leg.transfer
        assert t is not None
        if t.timer:
            self._cancel(t.timer)
        if t.agent is not None:
            with contextlib.suppress(Exception):
                t.agent.hangup(sip.call_op())

    # ---- DTMF ------------------------------------------------------------------------------------

    def on_dtmf(self, call: SipCall, digit: str, method: str) -> None:
        leg = call.leg
        if leg is None or leg.ended:
            return
        DTMF_DIGITS.labels(method).inc()
        if leg.collector is None:
            self._publish_dtmf(leg, digit, method)
            return
        if leg.collect_timer:
            self._cancel(leg.collect_timer)
        answer = leg.collector.push(digit)
        if answer is not None:
            leg.collector = None
            self._publish_dtmf(leg, answer, method)
        else:
            wait_s = leg.collector.timeout_ms / 1000
            leg.collect_timer = self._later(wait_s, self._collect_timeout, leg, method)

    def _collect_timeout(self, leg: CallLeg, method: str) -> None:
        leg.collect_timer = None
        if leg.collector is not None and not leg.ended:
            answer, leg.collector = leg.collector.done(), None
            self._publish_dtmf(leg, answer, method)

    def _publish_dtmf(self, leg: CallLeg, digits: str, method: str) -> None:
        self._lifecycle(leg, Kind.DTMF, dtmf=digits, dtmf_method=method)

    def send_dtmf(self, leg: CallLeg, digits: str, method: str) -> None:
        if leg.call is None or leg.answered_at is None:
            return
        try:
            prm = pj.CallSendDtmfParam()
            prm.digits = dtmf.clean(digits)
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO if method == "info" else pj.PJSUA_DTMF_METHOD_RFC2833
            leg.call.sendDtmf(prm)
        except Exception as exc:  # bad digits or no media yet: the call goes on
            log.warning("dtmf not sent", call_id=leg.call_id, error=str(exc))

    def on_inbox(self, event: Event[Any]) -> None:
        if event.envelope.occurred_at_us and event.envelope.occurred_at_us < self.started_us:
            return  # left over from a previous run of this worker
        payload = event.payload
        if isinstance(payload, CallCommand) and payload.reason == INBOX_CHECK:
            if payload.target == self._inbox_nonce:
                self._inbox_seen.set()
            return
        leg = self.legs.get(event.envelope.call_id)
        if leg is None or leg.ended:
            return
        if isinstance(event.payload, TtsAudio):
            self.play(leg, event)
        elif isinstance(event.payload, CallCommand):
            self.command(leg, event)


def build_worker(
    settings: Settings, index: int, sip_port: int, ipc_out: BinaryIO, vad_sock: socket.socket | None = None
) -> Service:
    svc = Service("telephony", settings, probes=False)  # the node's probes are the supervisor's
    worker = MediaWorker(settings, svc, index, sip_port, ipc_out, vad_sock)
    svc.on_start(worker.start)
    svc.on_drain(worker.drain)
    svc.on_stop(worker.stop)

    if not settings.telephony_inbox_via_supervisor:  # else the supervisor hands the inbox over ("inbox")

        @svc.bus.on(worker.inbox, TtsAudio, CallCommand, group=None)
        async def inbox(event: Event[Any]) -> None:
            worker.on_inbox(event)

    return svc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.telephony.worker")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--sip-port", type=int, default=0)
    parser.add_argument("--vad-fd", type=int, default=-1, help="socket to the node VAD (-1: Silero here)")
    args = parser.parse_args(argv)
    vad_sock = socket.socket(fileno=args.vad_fd) if args.vad_fd >= 0 else None
    # stdout is the supervisor's pipe: keep a private handle, send everything else printed to stderr
    ipc_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    settings = load(Settings)
    observability.configure_logging("telephony", settings.log_level)
    observability.configure_tracing("telephony")
    structlog.contextvars.bind_contextvars(worker=args.index)
    code = 1
    try:
        asyncio.run(build_worker(settings, args.index, args.sip_port, ipc_out, vad_sock).run())
        code = 0
    except BaseException:
        log.exception("media worker stopped with an error")
    finally:
        sip.exit_now(code)  # skip finalizers: see voicebot.sip.exit_now


if __name__ == "__main__":
    main()
