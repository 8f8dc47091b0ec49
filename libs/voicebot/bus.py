"""The one way a service talks to Kafka.

`Bus.on(topic, Payload)` registers a FastStream subscriber that: decodes the `Envelope` and checks its
schema, drops a replayed `event_id`, binds call_id/tenant_id to the logs, stamps the turn timeline,
runs the handler with retries, sends what still fails to `<topic>.dlq` with the error and the original
bytes, and only then marks the offset for commit (committed in the background, after the effect).
`Bus.publish` wraps a payload in an envelope derived from the event that caused it, so ids, media_node
and the timeline travel along.
W3C traceparent rides in Kafka headers through FastStream's OpenTelemetry middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
import uuid_utils
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from google.protobuf.message import DecodeError, Message
from prometheus_client import REGISTRY, Counter

from voicebot.config import Settings
from voicebot.events import DeadLetter, Envelope, Mark

log = structlog.get_logger("voicebot.bus")

P = TypeVar("P", bound=Message)

DLQ_TOTAL = Counter("voicebot_dlq_messages_total", "messages sent to a dead-letter topic", ["topic"])
DUPLICATES_TOTAL = Counter("voicebot_duplicate_events_total", "replayed events skipped", ["topic"])
RETRIES_TOTAL = Counter("voicebot_handler_retries_total", "handler attempts that failed", ["topic"])


def now_us() -> int:
    return time.time_ns() // 1000


def new_id() -> str:
    """UUIDv7: unique and time-ordered, the idempotency key of every event."""
    return str(uuid_utils.uuid7())


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


class BadMessage(ValueError):
    """The bytes are not an envelope of the expected schema: retrying cannot help."""


@dataclass(slots=True)
class Event(Generic[P]):
    """A decoded message: the envelope (ids, timeline) and its typed payload."""

    envelope: Envelope
    payload: P
    topic: str = ""

    def mark(self, stage: str, at_us: int | None = None) -> None:
        self.envelope.marks.append(Mark(stage=stage, at_us=at_us or now_us()))


def encode(payload: Message, envelope: Envelope) -> bytes:
    envelope.schema = payload.DESCRIPTOR.full_name
    envelope.payload = payload.SerializeToString()
    return envelope.SerializeToString()


def decode(raw: bytes, types: Iterable[type[Message]]) -> Event[Any]:
    """Parse an envelope and its payload; `BadMessage` says exactly what was wrong."""
    try:
        env = Envelope.FromString(raw)
    except DecodeError as exc:
        raise BadMessage(f"not an Envelope: {exc}") from None
    by_name = {t.DESCRIPTOR.full_name: t for t in types}
    payload_type = by_name.get(env.schema)
    if payload_type is None:
        raise BadMessage(f"unexpected schema {env.schema!r}, expected one of {sorted(by_name)}")
    if not env.event_id:
        raise BadMessage("envelope has no event_id")
    try:
        payload = payload_type.FromString(env.payload)
    except DecodeError as exc:
        raise BadMessage(f"payload is not a valid {env.schema}: {exc}") from None
    return Event(envelope=env, payload=payload)


class SeenEvents:
    """Bounded memory of handled event ids, so an at-least-once replay has no second effect."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


Handler = Callable[[Event[Any]], Awaitable[None]]


class OffsetCommitter:
    """Commits the offsets of handled messages every few milliseconds in the background.

    A message never waits for the previous one's commit round trip, and only offsets whose effect is done
    are committed (a partition is handled in order, so its highest handled offset is the commit point).
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._pending: dict[int, tuple[Any, dict[TopicPartition, int]]] = {}

    def handled(self, msg: KafkaMessage) -> None:
        consumer, record = getattr(msg, "consumer", None), msg.raw_message
        if consumer is None or not hasattr(record, "offset") or not getattr(consumer, "_group_id", None):
            return  # no consumer group (a worker's inbox): nothing to commit
        offsets = self._pending.setdefault(id(consumer), (consumer, {}))[1]
        offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for consumer, offsets in pending.values():
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:  # partition moved to another member: it re-reads, dedupe covers it
                log.warning("offset commit failed", error=str(exc))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()


@dataclass(frozen=True, slots=True)
class Route:
    """Where a consumed topic's messages go: their payload types and handler."""

    types: tuple[type[Message], ...]
    handler: Handler
    dedupe: bool


class Bus:
    """A service's connection to Kafka: subscribe with `on`, send with `publish`."""

    def __init__(self, service: str, settings: Settings, *, client_suffix: str = "") -> None:
        self.service = service
        self.settings = settings
        self.broker = KafkaBroker(
            settings.kafka_bootstrap.split(","),
            client_id=f"{service}{client_suffix}",
            linger_ms=0,
            request_timeout_ms=15_000,
            metadata_max_age_ms=5_000,  # a topic created after a consumer started is seen within seconds
            middlewares=[
                KafkaTelemetryMiddleware(),
                KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service),
            ],
            logger=None,
        )
        self.seen = SeenEvents(settings.dedupe_window)
        self.committer = OffsetCommitter(settings.commit_interval_ms / 1000)
        self._commit_task: asyncio.Task[None] | None = None
        self.dlq_count = 0
        self._routes: dict[tuple[str | None, str, int], dict[str, Route]] = {}
        self._started = False

    def on(
        self,
        topic: str,
        *types: type[Message],
        group: str | None = "",
        offset_reset: str = "earliest",
        dedupe: bool = True,
        realtime: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Subscribe `handler(event)` to `topic` in the service's consumer group (`group=None`: no group).

        `realtime=False` for consumers off the call path (records, scheduling): they poll less often, which
        leaves the CPU to the call path.
        """
        wait_ms = self.settings.fetch_max_wait_ms if realtime else self.settings.background_fetch_max_wait_ms
        group_id = (group or self.service) if group is not None else None

        def register(handler: Handler) -> Handler:
            if self._started:
                raise RuntimeError(f"subscribe to {topic} before the bus starts")
            routes = self._routes.setdefault((group_id, offset_reset, wait_ms), {})
            if topic in routes:
                raise ValueError(f"{topic} already has a handler in consumer group {group_id}")
            routes[topic] = Route(types, handler, dedupe)
            return handler

        return register

    def _subscribe(
        self, group_id: str | None, offset_reset: str, wait_ms: int, routes: dict[str, Route]
    ) -> None:
        """One Kafka consumer for all of a group's topics: every idle consumer costs a poll loop."""

        async def consume(msg: KafkaMessage) -> None:
            topic = msg.raw_message.topic
            route = routes[topic]
            await self._consume(topic, route.types, route.handler, msg, route.dedupe)

        self.broker.subscriber(
            *routes,
            group_id=group_id,
            auto_offset_reset=offset_reset,  # type: ignore[arg-type]
            fetch_max_wait_ms=wait_ms,
            ack_policy=AckPolicy.MANUAL if group_id is not None else AckPolicy.ACK_FIRST,
            max_partition_fetch_bytes=2 * 1024 * 1024,
        )(consume)

    async def _consume(
        self,
        topic: str,
        types: tuple[type[Message], ...],
        handler: Handler,
        msg: KafkaMessage,
        dedupe: bool,
    ) -> None:
        raw: bytes = msg.body
        try:
            event = decode(raw, types)
        except BadMessage as exc:
            await self._dead_letter(topic, msg, str(exc), attempts=0)
            self.committer.handled(msg)
            return
        event.topic = topic
        env = event.envelope
        if dedupe and env.event_id in self.seen:
            DUPLICATES_TOTAL.labels(topic).inc()
            self.committer.handled(msg)
            return
        event.mark(f"{self.service}.in")
        structlog.contextvars.bind_contextvars(
            call_id=env.call_id, tenant_id=env.tenant_id, campaign_id=env.campaign_id, event_id=env.event_id
        )
        try:
            error = ""
            for attempt in range(1, self.settings.handler_retries + 1):
                try:
                    await handler(event)
                    error = ""
                    break
                except Exception as exc:  # a handler bug must not stop the consumer loop
                    RETRIES_TOTAL.labels(topic).inc()
                    error = f"{type(exc).__name__}: {exc}"
                    log.warning("handler failed", topic=topic, attempt=attempt, error=error)
                    await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            if error:
                await self._dead_letter(topic, msg, error, attempts=self.settings.handler_retries)
            if dedupe:
                self.seen.add(env.event_id)
            self.committer.handled(msg)
        finally:
            structlog.contextvars.unbind_contextvars("call_id", "tenant_id", "campaign_id", "event_id")

    async def _dead_letter(self, topic: str, msg: KafkaMessage, error: str, attempts: int) -> None:
        record = msg.raw_message
        letter = DeadLetter(
            topic=topic,
            partition=getattr(record, "partition", -1),
            offset=getattr(record, "offset", -1),
            original=msg.body,
            error=error,
            consumer=self.service,
            attempts=attempts,
            failed_at_us=now_us(),
        )
        env = Envelope(event_id=new_id(), occurred_at_us=now_us(), producer=self.service)
        await self.broker.publish(
            encode(letter, env), dlq_topic(topic), key=msg.raw_message.key, headers={"error": error[:500]}
        )
        DLQ_TOTAL.labels(topic).inc()
        self.dlq_count += 1
        log.error("message dead-lettered", topic=topic, error=error)

    def envelope(self, cause: Envelope | None = None, **fields: Any) -> Envelope:
        """A new envelope that inherits ids, media_node and the timeline from its cause."""
        env = Envelope(event_id=new_id(), occurred_at_us=now_us(), producer=self.service)
        if cause is not None:
            env.tenant_id, env.campaign_id, env.call_id = cause.tenant_id, cause.campaign_id, cause.call_id
            env.media_node, env.contact_id = cause.media_node, cause.contact_id
            env.marks.extend(cause.marks)
        for name, value in fields.items():
            setattr(env, name, value)
        return env

    async def publish(
        self,
        topic: str,
        payload: Message,
        *,
        cause: Envelope | None = None,
        mark: bool = True,
        **fields: Any,
    ) -> Envelope:
        """Send `payload` keyed by call (or contact before a call exists), so a call stays in order."""
        env = self.envelope(cause, **fields)
        if mark:
            env.marks.append(Mark(stage=f"{self.service}.out", at_us=now_us()))
        key = (env.call_id or env.contact_id or env.event_id).encode()
        await self.broker.publish(encode(payload, env), topic, key=key)
        return env

    async def start(self) -> None:
        for (group_id, offset_reset, wait_ms), routes in self._routes.items():
            self._subscribe(group_id, offset_reset, wait_ms, routes)
        self._started = True
        await self.broker.start()
        if any(group_id is not None for group_id, _, _ in self._routes):  # else nothing is ever committed
            self._commit_task = asyncio.create_task(self.committer.run())

    async def stop(self) -> None:
        if self._commit_task is not None:
            self._commit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_task
        await self.committer.flush()
        await self.broker.stop()
