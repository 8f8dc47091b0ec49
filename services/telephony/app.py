"""Telephony node supervisor: takes approved dials and hands each to a media worker with a free slot.

The pjsua2 wheel carries at most 4 calls per process, so the node runs N worker processes
(services/telephony/worker.py), each with its own SIP port; see DESIGN.md "Events".
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from pydantic import Field

from services.telephony.supervisor import WorkerPool
from voicebot import config, recordings, topics
from voicebot.bus import Event
from voicebot.campaigns import CampaignBook
from voicebot.events import DialCommand
from voicebot.service import Service

log = structlog.get_logger("telephony")


class Settings(config.Settings):
    telephony_workers: int = Field(2, ge=1, le=64, description="most media worker processes on this node")
    telephony_workers_min: int = Field(
        1, ge=1, le=64, description="media workers kept running when idle (capped by telephony_workers)"
    )
    telephony_spawn_free_slots: int = Field(
        2, ge=0, le=256, description="start another worker when fewer call slots than this are free"
    )
    telephony_idle_retire_s: float = Field(
        60.0, ge=0.5, le=86400.0, description="a worker beyond the minimum idle this long is retired"
    )
    telephony_kamailio: bool = Field(
        False, description="run a Kamailio front that spreads inbound INVITEs over the workers"
    )
    telephony_kamailio_port: int = Field(5060, ge=0, le=65535, description="UDP port of the front; 0: any")
    telephony_inbox_via_supervisor: bool = Field(
        True, description="one consumer in the supervisor reads every worker's inbox and hands events over"
    )
    telephony_calls_per_worker: int = Field(
        3, ge=1, le=4, description="customer calls per worker (pjsua2 cap 4: one kept for a warm transfer)"
    )
    telephony_sip_port: int = Field(
        5080, ge=0, le=65535, description="SIP UDP port of worker 0 (+index); 0: any"
    )
    telephony_sip_host: str = Field("127.0.0.1", description="address the workers' SIP/RTP sockets bind to")
    telephony_trunk: str = Field("127.0.0.1:5070", description="host:port outbound calls are sent to")
    telephony_agent_trunk: str = Field(
        "",
        description="host:port where agent extensions (transfer targets) are called; empty: the trunk",
    )
    telephony_inbound_campaign: str = Field(
        "", description="campaign every inbound call is bound to; empty: the IVR routes each call"
    )
    telephony_vad_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Silero speech probability")
    telephony_min_speech_ms: int = Field(
        200, ge=32, le=2000, description="speech needed to start an utterance"
    )
    telephony_silence_stop_ms: int = Field(
        300, ge=64, le=5000, description="silence that ends an utterance (dialogue holds unfinished ones)"
    )
    telephony_utterance_max_s: float = Field(25.0, ge=2.0, le=30.0, description="longer speech is split")
    telephony_worker_restart_s: float = Field(
        1.0, ge=0.0, le=60.0, description="wait before restarting a worker"
    )
    telephony_recordings_dir: Path = Field(
        config.REPO_ROOT / "var" / "recordings", description="where call recordings are written (WAV)"
    )
    telephony_retention_sweep_s: float = Field(
        3600.0, ge=1.0, le=86400.0, description="how often recordings past their retention are deleted"
    )
    telephony_node_vad: bool = Field(
        True, description="the supervisor runs Silero for all workers' calls in one batch (else each worker)"
    )
    telephony_media_quality: int = Field(
        4, ge=1, le=10, description="pjsua media quality: 3-4 small resampling filter, 5-10 large (costlier)"
    )
    telephony_drain_s: float = Field(
        5.0, ge=0.5, le=60.0, description="on stop: time for live calls' hangups to be confirmed"
    )


class RetentionSweeper:
    """Deletes this node's recordings once their campaign's retention has passed (hourly by default)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.book = CampaignBook(settings.campaigns_dir)
        self.task: asyncio.Task[None] | None = None

    def retention_days(self, campaign_id: str) -> int | None:
        try:
            return self.book.get(campaign_id).recording.retention_days
        except KeyError:
            return None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def run(self) -> None:
        root = self.settings.telephony_recordings_dir
        while True:
            try:
                deleted = await asyncio.to_thread(recordings.sweep, root, self.retention_days)
                if deleted:
                    log.info("recordings past retention deleted", files=len(deleted))
            except OSError as exc:
                log.error("recording retention sweep failed", error=str(exc))
            await asyncio.sleep(self.settings.telephony_retention_sweep_s)


def build(settings: Settings) -> Service:
    svc = Service("telephony", settings)
    pool = WorkerPool(settings, svc.bus)
    svc.on_start(pool.start)
    svc.on_drain(pool.drain)
    svc.on_stop(pool.stop)
    sweeper = RetentionSweeper(settings)
    svc.on_start(sweeper.start)
    svc.on_stop(sweeper.stop)

    @svc.bus.on(topics.DIAL_COMMANDS, DialCommand, realtime=False)
    async def dial(event: Event[DialCommand]) -> None:
        """Returns (and the offset is committed) only once a worker has taken the dial: back-pressure."""
        await pool.dispatch(event)

    return svc
