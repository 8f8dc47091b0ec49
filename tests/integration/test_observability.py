"""Observability on the real broker: one trace across Kafka hops, probes and metrics of a running Service,
and log lines that name the call being handled.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from voicebot.broker import create_topics
from voicebot.bus import Bus, Event, dlq_topic
from voicebot.config import Settings
from voicebot.events import Envelope, Transcript
from voicebot.service import Service

PARTITIONS = 3


@pytest.fixture
async def fresh_topics(settings: Settings) -> AsyncIterator[tuple[str, str]]:
    """Two topics (and their DLQs) no other test writes to, so every record and counter here is ours."""
    tag = uuid.uuid4().hex[:10]
    names = (f"obs.{tag}.first", f"obs.{tag}.second")
    await create_topics(
        settings.kafka_bootstrap, {**{n: PARTITIONS for n in names}, **{dlq_topic(n): 1 for n in names}}
    )
    yield names


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of the global tracer provider, which FastStream's telemetry middleware uses.

    The global provider can be set only once per process: reuse it when a service already set one.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        assert trace.get_tracer_provider() is provider
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # the SDK cannot detach a processor; a shut exporter drops what it gets


def _traceparent(headers: list[tuple[str, bytes]]) -> tuple[int, int]:
    """(trace id, parent span id) of a W3C `traceparent` header: `00-<trace>-<span>-<flags>`."""
    value = dict(headers)["traceparent"].decode()
    version, trace_id, span_id, _flags = value.split("-")
    assert version == "00"
    return int(trace_id, 16), int(span_id, 16)


async def _records(bootstrap: str, topics: tuple[str, ...], count: int) -> list[ConsumerRecord]:
    """The first `count` records of `topics`, read with a plain consumer (no group, no FastStream)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        records: list[ConsumerRecord] = []
        async with asyncio.timeout(20):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def _spans_named(exporter: InMemorySpanExporter, names: set[str]) -> dict[str, ReadableSpan]:
    """Wait for spans with these names: a consumer span ends only after its handler returned."""
    async with asyncio.timeout(10):
        while True:
            found = {s.name: s for s in exporter.get_finished_spans() if s.name in names}
            if set(found) == names:
                return found
            await asyncio.sleep(0.02)


async def test_trace_context_travels_across_two_kafka_hops(
    settings: Settings, fresh_topics: tuple[str, str], spans: InMemorySpanExporter
) -> None:
    first, second = fresh_topics
    tag = uuid.uuid4().hex
    caller, relay, sink = Bus("caller", settings), Bus("relay", settings), Bus("sink", settings)
    arrived: asyncio.Queue[Event] = asyncio.Queue()

    @relay.on(first, Transcript, group=f"relay-{tag}")
    async def _relay(event: Event[Transcript]) -> None:
        await relay.publish(second, Transcript(text=f"{event.payload.text} relayed"), cause=event.envelope)

    @sink.on(second, Transcript, group=f"sink-{tag}")
    async def _sink(event: Event[Transcript]) -> None:
        await arrived.put(event)

    await asyncio.gather(*(bus.start() for bus in (caller, relay, sink)))
    try:
        with trace.get_tracer(__name__).start_as_current_span("turn") as turn:
            await caller.publish(first, Transcript(text="hello"), cause=Envelope(call_id=f"c-{tag}"))
        event = await asyncio.wait_for(arrived.get(), 20)
        assert event.payload.text == "hello relayed"
        assert event.envelope.call_id == f"c-{tag}"

        trace_id = turn.get_span_context().trace_id
        hops = await _spans_named(
            spans,
            {f"{first} publish", f"{first} process", f"{second} publish", f"{second} process"},
        )
        ours = [s for s in spans.get_finished_spans() if s.name.startswith((first, second))]
        assert {s.context.trace_id for s in ours} == {trace_id}, "a hop started a new trace"
        assert hops[f"{first} publish"].kind is trace.SpanKind.PRODUCER
        assert hops[f"{second} process"].kind is trace.SpanKind.CONSUMER

        by_id = {s.context.span_id: s for s in ours}
        records = {r.topic: r for r in await _records(settings.kafka_bootstrap, fresh_topics, 2)}
        # a producer span hangs under the span current at publish time: the caller's turn, then the relay's
        # processing of the first message; each consumer continues exactly the context in the header
        current_at_publish = {
            first: turn.get_span_context().span_id,
            second: hops[f"{first} process"].context.span_id,
        }
        for topic in fresh_topics:
            header_trace, header_parent = _traceparent(records[topic].headers)
            assert header_trace == trace_id
            producer = by_id[header_parent]
            assert producer.kind is trace.SpanKind.PRODUCER
            assert producer.parent is not None and producer.parent.span_id == current_at_publish[topic]
            assert hops[f"{topic} process"].parent.span_id == header_parent
    finally:
        await asyncio.gather(*(bus.stop() for bus in (caller, relay, sink)))


def _sample(metrics_text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


async def test_service_serves_probes_and_bus_metrics(
    settings: Settings, fresh_topics: tuple[str, str]
) -> None:
    topic = fresh_topics[0]
    name = f"obs-{uuid.uuid4().hex[:8]}"
    svc = Service(name, settings)
    models_loaded = asyncio.Event()
    handled: list[str] = []

    @svc.on_start
    async def _load_models() -> None:
        await models_loaded.wait()

    @svc.bus.on(topic, Transcript)
    async def _handle(event: Event[Transcript]) -> None:
        handled.append(event.payload.text)

    loop = asyncio.get_running_loop()
    running = asyncio.create_task(svc.run())
    try:
        async with asyncio.timeout(10):
            while not svc.http_port:
                await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.http_port}", timeout=5) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 503, "ready before its start hooks finished"
            models_loaded.set()
            async with asyncio.timeout(20):
                while (await http.get("/readyz")).status_code != 200:
                    await asyncio.sleep(0.05)

            await svc.bus.broker.publish(b"\x00not an envelope\xff", topic, key=b"c-bad")
            await svc.bus.publish(topic, Transcript(text="fine"), cause=Envelope(call_id="c-ok"))
            async with asyncio.timeout(20):
                while True:
                    page = await http.get("/metrics")
                    if _sample(page.text, "voicebot_dlq_messages_total", topic=topic) == 1 and handled:
                        break
                    await asyncio.sleep(0.05)
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/plain")
            assert "# TYPE voicebot_dlq_messages_total counter" in page.text
            assert handled == ["fine"], "the consumer did not go on after the bad message"
            # FastStream's own per-service counters are on the same page
            received = _sample(page.text, "faststream_received_messages_total", app_name=name, handler=topic)
            assert received is not None and received >= 2
            assert (await http.get("/nope")).status_code == 404
        svc.stop()
        await asyncio.wait_for(running, 20)
        assert not svc.ready
        async with httpx.AsyncClient(timeout=2) as http:
            with pytest.raises(httpx.ConnectError):  # the probe server stopped with the service
                await http.get(f"http://127.0.0.1:{svc.http_port}/healthz")
    finally:
        svc.stop()
        models_loaded.set()
        await asyncio.wait_for(running, 20)
        for sig in (signal.SIGINT, signal.SIGTERM):  # Service.run took the loop's signals; hand them back
            loop.remove_signal_handler(sig)


# Run in a child process so the production log set-up (configure_logging: JSON on stderr) is used as is
# without reconfiguring structlog and the root logger of the test process.
LOGGING_CHILD = """
import asyncio, sys
import structlog
from voicebot.bus import Bus
from voicebot.config import Settings
from voicebot.events import Envelope, Transcript
from voicebot.observability import configure_logging

bootstrap, topic, call_id = sys.argv[1:]


async def main() -> None:
    bus = Bus("obs-logs", Settings(kafka_bootstrap=bootstrap, handler_retries=2))
    done, attempts = asyncio.Event(), []

    @bus.on(topic, Transcript, group="g-" + call_id)
    async def handle(event):
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        structlog.get_logger("handler").info("reply planned", words=len(event.payload.text.split()))
        done.set()

    await bus.start()
    try:
        cause = Envelope(call_id=call_id, tenant_id="tenant-obs", campaign_id="acme-card")
        await bus.publish(topic, Transcript(text="two words"), cause=cause)
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await bus.stop()


configure_logging("obs-logs")
asyncio.run(main())
"""


async def test_log_lines_in_a_handler_carry_the_events_call_and_tenant(
    settings: Settings, fresh_topics: tuple[str, str]
) -> None:
    call_id = f"c-{uuid.uuid4().hex}"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOGGING_CHILD,
        settings.kafka_bootstrap,
        fresh_topics[0],
        call_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(child.communicate(), 45)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    text = err.decode()
    assert child.returncode == 0, text
    lines = {}
    for raw in text.splitlines():
        if raw.startswith("{"):
            line = json.loads(raw)
            lines[line["event"]] = line
    for event in ("reply planned", "handler failed"):  # the handler's own line and the bus's retry warning
        assert lines[event]["call_id"] == call_id, lines[event]
        assert lines[event]["tenant_id"] == "tenant-obs"
        assert lines[event]["campaign_id"] == "acme-card"
        assert lines[event]["service"] == "obs-logs"
    assert lines["reply planned"]["words"] == 2
    assert lines["handler failed"]["level"] == "warning"
