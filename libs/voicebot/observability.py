"""Logs, traces and metrics the same way in every service.

structlog writes one JSON object per line with call_id/tenant_id bound from the event being handled;
a last processor masks anything that looks like a phone number, so PII cannot leak through a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

# 9 to 15 digits, optionally with single spaces or dashes: phone numbers, not dates, times or counters.
PHONE_RE = re.compile(r"(?<![\w.:-])\+?\d(?:[ -]?\d){8,14}(?![\w.:-])")


def mask_phone(text: str) -> str:
    """`+15551234567` → `+1555*****67`: enough to tell calls apart, not enough to dial."""

    def _mask(m: re.Match[str]) -> str:
        digits = m.group(0)
        keep_head = 5 if digits.startswith("+") else 4
        return digits[:keep_head] + "*" * max(len(digits) - keep_head - 2, 0) + digits[-2:]

    return PHONE_RE.sub(_mask, text)


def _mask_pii(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = mask_phone(value)
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON logs on stderr; stdlib loggers (aiokafka, uvicorn) go through the same pipeline."""
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s", force=True)
    for noisy in ("aiokafka", "uvicorn.access", "faststream"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_pii,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def configure_tracing(service: str) -> TracerProvider:
    """A tracer provider named after the service; exporters are added by deployment (OTLP) when set."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    trace.set_tracer_provider(provider)
    return provider


Check = Callable[[], bool]


def make_http_app(ready: Check) -> Callable[..., Awaitable[None]]:
    """ASGI app with /healthz (process alive), /readyz (broker connected, models loaded) and /metrics."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope.get("path", "")
        if path == "/healthz":
            status, body, ctype = 200, b"ok\n", b"text/plain"
        elif path == "/readyz":
            ok = ready()
            status, body, ctype = (200 if ok else 503), (b"ready\n" if ok else b"not ready\n"), b"text/plain"
        elif path == "/metrics":
            status, body, ctype = 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST.encode()
        else:
            status, body, ctype = 404, b"not found\n", b"text/plain"
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
        await send({"type": "http.response.body", "body": body})

    return app


class HttpServer:
    """The probe/metrics server running in the service's loop."""

    def __init__(self, server: Any, task: asyncio.Task[None], port: int) -> None:
        self._server, self._task, self.port = server, task, port

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task


async def serve_http(host: str, port: int, ready: Check) -> HttpServer:
    """Start /healthz, /readyz and /metrics on host:port (0 = a free port)."""
    import uvicorn

    config = uvicorn.Config(make_http_app(ready), host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # the service owns signals
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return HttpServer(server, task, server.servers[0].sockets[0].getsockname()[1])
