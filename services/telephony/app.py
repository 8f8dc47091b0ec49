"""Telephony node supervisor: takes approved dials and hands each to a media worker with a free slot.

The pjsua2 wheel carries at most 4 calls per process, so the node runs N worker processes
(services/telephony/worker.py), each with its own SIP port; see DESIGN.md "Events".
"""

from __future__ import annotations

from pydantic import Field

from services.telephony.supervisor import WorkerPool
from voicebot import config, topics
from voicebot.bus import Event
from voicebot.events import DialCommand
from voicebot.service import Service


class Settings(config.Settings):
    telephony_workers: int = Field(2, ge=1, le=64, description="media worker processes on this node")
    telephony_calls_per_worker: int = Field(
        4, ge=1, le=4, description="calls per worker (pjsua2 wheel cap: 4)"
    )
    telephony_sip_port: int = Field(
        5080, ge=0, le=65535, description="SIP UDP port of worker 0 (+index); 0: any"
    )
    telephony_sip_host: str = Field("127.0.0.1", description="address the workers' SIP/RTP sockets bind to")
    telephony_trunk: str = Field("127.0.0.1:5070", description="host:port outbound calls are sent to")
    telephony_inbound_campaign: str = Field("acme-card", description="campaign of calls that come in")
    telephony_vad_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Silero speech probability")
    telephony_min_speech_ms: int = Field(
        200, ge=32, le=2000, description="speech needed to start an utterance"
    )
    telephony_silence_stop_ms: int = Field(400, ge=64, le=5000, description="silence that ends an utterance")
    telephony_utterance_max_s: float = Field(25.0, ge=2.0, le=30.0, description="longer speech is split")
    telephony_worker_restart_s: float = Field(
        1.0, ge=0.0, le=60.0, description="wait before restarting a worker"
    )
    telephony_drain_s: float = Field(
        5.0, ge=0.5, le=60.0, description="on stop: time for live calls' hangups to be confirmed"
    )


def build(settings: Settings) -> Service:
    svc = Service("telephony", settings)
    pool = WorkerPool(settings, svc.bus)
    svc.on_start(pool.start)
    svc.on_drain(pool.drain)
    svc.on_stop(pool.stop)

    @svc.bus.on(topics.DIAL_COMMANDS, DialCommand, realtime=False)
    async def dial(event: Event[DialCommand]) -> None:
        """Returns (and the offset is committed) only once a worker has taken the dial: back-pressure."""
        await pool.dispatch(event)

    return svc
