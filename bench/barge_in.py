"""Barge-in on the whole running platform: how fast the bot goes quiet when the customer talks over it,
and whether backchannels ("uh-huh", "okay") leave the reply alone.

Simulated customers (bench/barge_personas.yaml) call through real SIP. For each line said over the bot,
the customer's own log gives its speech onset and the last bot audio it heard; a question must stop the
bot (latency = last bot audio heard - speech onset, so RTP and jitter buffers on both legs are included),
a backchannel must not (the bot's audio goes on past the backchannel's end).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from common import machine, table

from voicebot.config import REPO_ROOT
from voicebot.demo import fresh_database
from voicebot.simulator import load_personas
from voicebot.stack import Stack

PERSONAS = Path(__file__).resolve().parent / "barge_personas.yaml"
BACKCHANNELS = {"uh-huh.", "okay.", "mm-hmm.", "yeah.", "right."}


def analyse(events: list[dict], personas: dict) -> tuple[list[float], int, int, int]:
    """(stop latencies of real barge-ins, barge-ins that did not stop the bot, backchannels, cut ones)."""
    by_persona: dict[str, list[dict]] = {}
    for e in events:
        by_persona.setdefault(e.get("persona", ""), []).append(e)
    over = {
        p.name: {i for i, line in enumerate(p.lines) if line.over_bot_after_s is not None}
        for p in personas.values()
    }
    stops: list[float] = []
    missed = backchannels = cut = 0
    for name, evs in by_persona.items():
        for i, e in enumerate(evs):
            if e["event"] != "line_started" or e["line"] not in over.get(name, set()):
                continue
            ended = next((x for x in evs[i:] if x["event"] == "line_ended"), None)
            quiet = next((x for x in evs[i:] if x["event"] == "bot_audio_ended"), None)
            if ended is None or quiet is None or quiet["at_us"] < e["at_us"]:
                continue  # the bot was already quiet (between two sentences): not said over it
            if e["text"].lower() in BACKCHANNELS:
                backchannels += 1
                cut += quiet["at_us"] < ended["at_us"] + 300_000  # the bot went quiet with the backchannel
            elif quiet["at_us"] <= ended["at_us"]:
                stops.append((quiet["at_us"] - e["at_us"]) / 1e6)
            else:
                missed += 1
    return stops, missed, backchannels, cut


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--personas", type=Path, default=PERSONAS)
    parser.add_argument("--rounds", type=int, default=2, help="campaign runs (each calls every persona)")
    args = parser.parse_args()
    personas = load_personas(args.personas)
    phones = list(yaml.safe_load(args.personas.read_text()))
    events: list[dict] = []
    worker_log: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        now = datetime.now(UTC).strftime("%Y-%m-%dT18:00:00+00:00")
        workdir = REPO_ROOT / "var" / "bench-barge"
        shutil.rmtree(workdir, ignore_errors=True)  # the simulators append to their log
        stack = Stack(
            workdir,
            personas=args.personas,
            database_url=fresh_database("voicebot_bench"),
            extra_env={"VOICEBOT_COMPLIANCE_NOW": now, "VOICEBOT_LOG_LEVEL": "INFO"},  # INFO: the pause log
        )
        t0 = time.monotonic()
        with stack:
            for r in range(args.rounds):
                contacts = Path(tmp) / f"contacts-{r}.csv"
                contacts.write_text(
                    "contact_id,phone,name,timezone\n"
                    + "".join(f"b{r}-{i},{p},Customer{i},America/New_York\n" for i, p in enumerate(phones))
                )
                stack.run_campaign(contacts, "acme-card", 900, "--max-concurrent", "2")
            time.sleep(1)
            events = [json.loads(x) for x in stack.sim_log.read_text().splitlines() if x.strip()]
            lines = stack.log_path("telephony").read_text().splitlines()
            worker_log = [json.loads(x) for x in lines if x.startswith("{")]
        wall = time.monotonic() - t0
    stops, missed, backchannels, cut = analyse(events, personas)
    pauses = [
        r["after_ms"] / 1000 for r in worker_log if r.get("event") == "playback paused: customer speaks"
    ]
    print(
        f"barge-in — {machine()}; all services + broker + simulated customers on this machine, "
        f"2 calls at a time, {wall:.0f} s\n"
        "customer's ear: speech onset -> last bot audio the customer heard (RTP + jitter buffers both ways)\n"
        "media worker: speech onset in the received audio -> playback paused (frames stop)\n\n"
        + table([("customer's ear: bot stops", stops), ("media worker: playback paused", pauses)])
        + f"\n\nbarge-ins that did not stop the bot: {missed} of {len(stops) + missed}"
        f"\nbackchannels that stopped the reply: {cut} of {backchannels}"
    )
    return 0 if stops and not missed else 1


if __name__ == "__main__":
    sys.exit(main())
