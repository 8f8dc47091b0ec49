"""Service stop order on the real broker: drain hooks run after the stop signal while the bus still
publishes, then the bus stops, then on_stop hooks run (the telephony node relies on it to report calls)."""

from __future__ import annotations

import asyncio
import signal
import uuid

from voicebot.bus import Bus, Event
from voicebot.config import Settings
from voicebot.events import Transcript
from voicebot.service import Service


async def test_drain_hooks_publish_before_the_bus_stops(settings: Settings) -> None:
    topic = "asr.transcripts"
    svc = Service("drain-test", settings)
    order: list[str] = []

    @svc.on_start
    async def started() -> None:
        order.append("start")

    @svc.on_drain
    async def drain() -> None:
        order.append(f"drain ready={svc.ready}")
        await svc.bus.publish(topic, Transcript(text=f"last words {uuid.uuid4().hex}"))

    @svc.on_drain
    async def broken() -> None:
        raise RuntimeError("a failing drain hook must not stop the others")

    @svc.on_drain
    async def after_broken() -> None:
        order.append("drain 2")

    @svc.on_stop
    async def stopped() -> None:
        order.append("stop")

    running = asyncio.create_task(svc.run())
    while not svc.ready:
        await asyncio.sleep(0.02)
    svc.stop()
    await asyncio.wait_for(running, 30)
    for sig in (signal.SIGINT, signal.SIGTERM):  # run() took them over in this test process
        asyncio.get_running_loop().remove_signal_handler(sig)
    assert order == ["start", "drain ready=False", "drain 2", "stop"]

    reader = Bus("drain-reader", settings)
    got: asyncio.Queue[str] = asyncio.Queue()

    @reader.on(topic, Transcript, group=f"r-{uuid.uuid4().hex}")
    async def _read(event: Event) -> None:
        if event.envelope.producer == "drain-test":
            await got.put(event.payload.text)

    await reader.start()
    try:
        assert (await asyncio.wait_for(got.get(), 20)).startswith("last words")
    finally:
        await reader.stop()
