"""Voice-to-voice latency per turn on the whole running platform, broken down by stage and bus hop.

Simulated customers (bench/personas.yaml) call through real SIP and ask several questions each; for every
bot reply that answers customer speech, the turn timeline (envelope marks) gives end of customer speech →
first bot audio on the SIP leg and each stage in between. Prints a table with the machine noted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import yaml
from common import machine, table

from voicebot import topics
from voicebot.bus import Bus, Event
from voicebot.config import REPO_ROOT, Settings
from voicebot.demo import fresh_database
from voicebot.events import CallLifecycle
from voicebot.stack import Stack
from voicebot.timeline import segments, truncate_at_first_audio, voice_to_voice

PERSONAS = Path(__file__).resolve().parent / "personas.yaml"


async def measure(stack: Stack, contacts: Path, campaign: str, concurrent: int) -> list[list]:
    turns: list[list] = []
    bus = Bus("bench", Settings(kafka_bootstrap=stack.bootstrap))

    @bus.on(topics.LIFECYCLE, CallLifecycle, group=f"bench-{uuid.uuid4().hex}")
    async def _playback(event: Event[CallLifecycle]) -> None:
        if event.payload.kind == CallLifecycle.PLAYBACK_STARTED:
            marks = truncate_at_first_audio(event.envelope.marks)
            if voice_to_voice(marks) is not None:
                turns.append(marks)

    await bus.start()
    try:
        result = await asyncio.to_thread(
            stack.run_campaign, contacts, campaign, 900, "--max-concurrent", str(concurrent)
        )
        if result.returncode != 0:
            print(result.stdout, result.stderr, file=sys.stderr)
        await asyncio.sleep(2)
    finally:
        await bus.stop()
    return turns


def report(turns: list[list], wall_s: float, concurrent: int) -> str:
    v2v = [voice_to_voice(m) or 0.0 for m in turns]
    by_stage: dict[str, list[float]] = defaultdict(list)
    bus_total: list[float] = []
    for marks in turns:
        parts = segments(marks)
        for seg in parts:
            by_stage[seg.name].append(seg.seconds)
        bus_total.append(sum(s.seconds for s in parts if s.kind == "bus"))
    order = ["endpointing", "asr", "dialogue", "llm", "compliance", "tts", "playout"]
    rows = [("voice-to-voice", v2v)]
    rows += [(name, by_stage[name]) for name in order if by_stage.get(name)]
    rows += [(name, values) for name, values in sorted(by_stage.items()) if name.startswith("bus ")]
    rows.append(("bus overhead per turn", bus_total))
    return (
        f"turn latency — {machine()}; all services + broker + simulated customers on this machine\n"
        f"{len(turns)} turns in {wall_s:.0f} s, {concurrent} call(s) at a time\n\n" + table(rows)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--personas", type=Path, default=PERSONAS)
    parser.add_argument("--campaign", default="acme-card")
    parser.add_argument("--concurrent", type=int, default=1, help="calls at once (1: turn latency alone)")
    args = parser.parse_args()
    personas = yaml.safe_load(args.personas.read_text())
    phones = list(personas.get("personas", personas))
    with tempfile.TemporaryDirectory() as tmp:
        contacts = Path(tmp) / "contacts.csv"
        contacts.write_text(
            "contact_id,phone,name,timezone\n"
            + "".join(f"bench-{i},{p},Customer{i},America/New_York\n" for i, p in enumerate(phones))
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT18:00:00+00:00")
        stack = Stack(
            REPO_ROOT / "var" / "bench",
            personas=args.personas,
            database_url=fresh_database("voicebot_bench"),
            extra_env={"VOICEBOT_COMPLIANCE_NOW": now, "VOICEBOT_LOG_LEVEL": "WARNING"},
        )
        with stack:
            t0 = time.monotonic()
            turns = asyncio.run(measure(stack, contacts, args.campaign, args.concurrent))
            wall = time.monotonic() - t0
    print(report(turns, wall, args.concurrent))
    return 0 if len(turns) >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
