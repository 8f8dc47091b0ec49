"""Bus hop latency: publish → consume through the platform's Bus (envelope, dedupe, middlewares).

Runs its own tansu broker on a free port. Prints p50/p95/p99 and throughput with the machine noted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from common import machine, table

from voicebot.broker import create_topics, free_port, start_tansu, stop_process
from voicebot.bus import Bus, Event, now_us
from voicebot.config import Settings
from voicebot.events import Envelope, Transcript


async def run(n: int, burst: int) -> None:
    port = free_port()
    proc = start_tansu(port)
    try:
        settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}")
        await create_topics(settings.kafka_bootstrap)
        producer, consumer = Bus("bench-producer", settings), Bus("bench-consumer", settings)
        hops: list[float] = []
        done = asyncio.Event()
        received = 0

        @consumer.on("asr.transcripts", Transcript, group=f"bench-{uuid.uuid4().hex}")
        async def _got(event: Event[Transcript]) -> None:
            nonlocal received
            out = next(m.at_us for m in event.envelope.marks if m.stage == "bench-producer.out")
            hops.append((now_us() - out) / 1e6)
            received += 1
            if received >= n + burst:
                done.set()

        await producer.start()
        await consumer.start()
        await asyncio.sleep(6)  # let the consumer group settle before measuring
        # one message at a time: the latency of a hop on the call path
        for i in range(n):
            await producer.publish(
                "asr.transcripts", Transcript(text=f"t{i}"), cause=Envelope(call_id=f"c{i % 50}")
            )
            await asyncio.sleep(0.01)
        sequential = list(hops)
        t0 = time.perf_counter()
        for i in range(burst):
            await producer.publish(
                "asr.transcripts", Transcript(text=f"b{i}"), cause=Envelope(call_id=f"c{i % 50}")
            )
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - t0
        await producer.stop()
        await consumer.stop()
        print(f"bus hop latency — {machine()}, tansu in memory, aiokafka + FastStream")
        print(table([("one hop (sequential)", sequential), ("one hop (burst)", hops[len(sequential) :])]))
        print(f"\nthroughput: {burst / elapsed:.0f} messages/s (burst of {burst}, produce + consume)")
    finally:
        stop_process(proc)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--burst", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(run(args.n, args.burst))
