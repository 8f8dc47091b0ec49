"""What every service process does the same way: settings, logs, traces, bus, probes, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from aiokafka.errors import KafkaConnectionError

from voicebot import observability
from voicebot.bus import Bus
from voicebot.config import Settings, load

log = structlog.get_logger("voicebot.service")

Hook = Callable[[], Awaitable[None]]
S = TypeVar("S", bound=Settings)


class Service:
    """A named process with a bus; app modules add subscribers and start/stop hooks to it."""

    def __init__(self, name: str, settings: Settings, *, probes: bool = True) -> None:
        """`probes=False` for a child process whose parent serves the probes (a media worker): an idle
        HTTP server still wakes its loop ten times a second."""
        self.name = name
        self.settings = settings
        self.probes = probes
        self.bus = Bus(name, settings)
        self.ready = False
        self.http_port = 0
        self._on_start: list[Hook] = []
        self._on_drain: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._stopping = asyncio.Event()

    def on_start(self, hook: Hook) -> Hook:
        """Run before the bus starts consuming (load models, open the database)."""
        self._on_start.append(hook)
        return hook

    def on_drain(self, hook: Hook) -> Hook:
        """Run after the stop signal while the bus still works (finish live work and publish its last
        events, e.g. hang up calls and report them ENDED); a hook bounds its own duration."""
        self._on_drain.append(hook)
        return hook

    def on_stop(self, hook: Hook) -> Hook:
        """Run after the bus has stopped, in reverse order of registration (release resources)."""
        self._on_stop.append(hook)
        return hook

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        http = None
        if self.probes:
            http = await observability.serve_http(
                self.settings.http_host, self.settings.http_port, lambda: self.ready
            )
            self.http_port = http.port
        bus_started = False
        try:
            for hook in self._on_start:
                await hook()
            try:
                await self.bus.start()
            except KafkaConnectionError as exc:
                raise SystemExit(
                    f"{self.name}: cannot reach Kafka at {self.settings.kafka_bootstrap}: {exc}"
                ) from None
            bus_started = True
            # what start-up built (modules, models, clients) lives as long as the process: out of the
            # collector's way, a full collection scans only what came since (it held a media worker's
            # GIL, and so its audio clock, for up to 0.36 s at 100 calls)
            gc.freeze()
            self.ready = True
            log.info("service ready", http_port=self.http_port)
            await self._stopping.wait()
        finally:
            self.ready = False
            log.info("service stopping")
            try:
                if bus_started:
                    await self._drain()
                await self.bus.stop()
            finally:
                for hook in reversed(self._on_stop):
                    await hook()
                if http is not None:
                    await http.stop()

    async def _drain(self) -> None:
        for hook in self._on_drain:
            try:
                await hook()
            except Exception:  # one failed hook must not keep the others or the bus from stopping
                log.exception("drain hook failed", hook=getattr(hook, "__qualname__", repr(hook)))


def main(name: str, settings_cls: type[S], build: Callable[[S], Service]) -> None:
    """Entry point of `python -m services.<name>`: fail fast on bad settings, then run until a signal."""
    settings = load(settings_cls)
    observability.configure_logging(name, settings.log_level)
    observability.configure_tracing(name)
    asyncio.run(build(settings).run())
