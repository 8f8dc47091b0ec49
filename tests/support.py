"""Helpers shared by the integration tests: a service run in-process, a tester bus, a wait."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.message import Message

from voicebot.bus import Bus, Event
from voicebot.config import Settings
from voicebot.service import Service


@contextlib.asynccontextmanager
async def running(svc: Service, timeout: float = 120) -> AsyncIterator[Service]:
    """Run a service in this loop until the block ends; fails fast if it dies while starting."""
    task = asyncio.create_task(svc.run())
    async with asyncio.timeout(timeout):
        while not svc.ready:
            if task.done():
                task.result()
                raise AssertionError(f"{svc.name} stopped before it was ready")
            await asyncio.sleep(0.02)
    try:
        yield svc
    finally:
        svc.stop()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def listening_bus(bootstrap: str, topic: str, *types: type[Message]) -> AsyncIterator[Bus]:
    """A bus named "tester" that publishes for the test and puts every event on `topic` on `.received`."""
    bus = Bus("tester", Settings(kafka_bootstrap=bootstrap))
    queue: asyncio.Queue[Event] = asyncio.Queue()

    @bus.on(topic, *types, group=f"t-{uuid.uuid4().hex}")
    async def _put(event: Event) -> None:
        await queue.put(event)

    bus.received = queue  # type: ignore[attr-defined]
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


async def call_chunks(queue: asyncio.Queue[Event], call_id: str, timeout: float = 30) -> list[Event]:
    """One call's chunks (replies, audio) from `queue`, up to and including the one marked final."""
    chunks: list[Event] = []
    async with asyncio.timeout(timeout):
        while not chunks or not chunks[-1].payload.final:
            event = await queue.get()
            if event.envelope.call_id == call_id:
                chunks.append(event)
    return chunks


async def until(check: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll `check` until it returns something truthy (and return that), or fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.1)
    return result
