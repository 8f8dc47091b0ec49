"""Telephony on the real broker and real SIP on loopback: the supervisor dials simulated customers.

The supervisor and the simulator run as subprocesses (as in production); the test plays the other
services: it publishes the DialCommand and the bot's TtsAudio, and reads lifecycle and utterances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from voicebot import topics
from voicebot.bus import Bus, Event
from voicebot.config import REPO_ROOT, Settings
from voicebot.events import (
    AudioUtterance,
    CallCommand,
    CallLifecycle,
    Contact,
    DialCommand,
    Envelope,
    TtsAudio,
)
from voicebot.simulator import speak

Kind = CallLifecycle.Kind
PERSONAS = REPO_ROOT / "demo" / "personas.yaml"
RINGS_FOREVER = "+15550100009"
RING_TIMEOUT_S = 5


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """The simulated customers on a free SIP port; yields (port, event log)."""
    folder = tmp_path_factory.mktemp("sim")
    log = folder / "sim.jsonl"
    personas = yaml.safe_load(PERSONAS.read_text())
    personas[RINGS_FOREVER] = {"name": "rings-forever", "answer": False, "answer_delay_s": 0}
    (folder / "personas.yaml").write_text(yaml.safe_dump(personas))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voicebot.simulator",
            "--personas",
            str(folder / "personas.yaml"),
            "--port",
            "0",
            "--log",
            str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(e["event"] == "simulator_ready" for e in _read_log(log)):
            assert proc.poll() is None, "simulator exited at start"
            assert time.monotonic() < deadline, "simulator not ready"
            time.sleep(0.1)
        port = next(e["port"] for e in _read_log(log) if e["event"] == "simulator_ready")
        yield port, log
    finally:
        _stop(proc)
        assert proc.returncode == 0, f"simulator did not stop cleanly: {proc.returncode}"


@pytest.fixture(scope="module")
def supervisor(kafka_bootstrap: str, simulator: tuple[int, Path], tmp_path_factory: pytest.TempPathFactory):
    """`python -m services.telephony` with one media worker, dialling the simulator."""
    port, _ = simulator
    folder = tmp_path_factory.mktemp("tel")
    stderr = folder / "telephony.log"
    # the demo campaign with a short ring timeout (the minimum), so the CANCEL path is quick to test
    campaign = yaml.safe_load((REPO_ROOT / "campaigns" / "acme-card.yaml").read_text())
    campaign["limits"]["ring_timeout_s"] = RING_TIMEOUT_S
    campaign["knowledge_base"] = str(REPO_ROOT / "campaigns" / campaign["knowledge_base"])
    (folder / "campaigns").mkdir()
    (folder / "campaigns" / "acme-card.yaml").write_text(yaml.safe_dump(campaign))
    env = {
        **os.environ,
        "VOICEBOT_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "VOICEBOT_TELEPHONY_TRUNK": f"127.0.0.1:{port}",
        "VOICEBOT_TELEPHONY_SIP_PORT": "0",
        "VOICEBOT_TELEPHONY_WORKERS": "1",
        "VOICEBOT_NODE_ID": f"test-{uuid.uuid4().hex[:8]}",
        "VOICEBOT_HTTP_PORT": "0",
        "VOICEBOT_CAMPAIGNS_DIR": str(folder / "campaigns"),
    }
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.telephony"],
            cwd=REPO_ROOT,
            env=env,
            stdout=err,
            stderr=err,
            start_new_session=True,
        )
    try:
        yield proc, stderr
    finally:
        _stop(proc)


class Watcher:
    """Lifecycle events and utterances of the calls this test made, by call/contact."""

    def __init__(self, settings: Settings) -> None:
        self.bus = Bus("test-watcher", settings)
        self.events: list[Event] = []
        self.changed = asyncio.Event()
        group = f"w-{uuid.uuid4().hex}"

        @self.bus.on(topics.LIFECYCLE, CallLifecycle, group=group + "-l")
        @self.bus.on(topics.UTTERANCES, AudioUtterance, group=group + "-u")
        async def _seen(event: Event) -> None:
            self.events.append(event)
            self.changed.set()

    async def wait_for(self, predicate, timeout: float, what: str) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [(type(e.payload).__name__, getattr(e.payload, "kind", "")) for e in self.events]
                raise AssertionError(f"timed out waiting for {what}; seen {kinds}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


@pytest.fixture
async def watcher(settings: Settings, supervisor) -> AsyncIterator[Watcher]:
    w = Watcher(settings)
    await w.bus.start()
    try:
        yield w
    finally:
        await w.bus.stop()


def _lifecycle(contact_id: str, kind: int, turn_id: str = ""):
    def match(e: Event) -> bool:
        return (
            isinstance(e.payload, CallLifecycle)
            and e.envelope.contact_id == contact_id
            and e.payload.kind == kind
            and (not turn_id or e.payload.turn_id == turn_id)
        )

    return match


async def _dial(bus: Bus, phone: str) -> str:
    contact_id = f"c-{uuid.uuid4().hex[:10]}"
    cause = Envelope(tenant_id="demo", campaign_id="acme-card", contact_id=contact_id)
    cmd = DialCommand(contact=Contact(contact_id=contact_id, phone_e164=phone, name="Test"), attempt=1)
    await bus.publish(topics.DIAL_COMMANDS, cmd, cause=cause)
    return contact_id


async def _say(bus: Bus, answered: Envelope, turn_id: str, text: str, end_call: bool = False) -> None:
    """Bot audio as the TTS service sends it: 22.05 kHz chunks (the worker resamples), streamed."""
    from voicebot.audio import resample_pcm16

    pcm = resample_pcm16(speak(text), 16000, 22050)
    size = len(pcm) // 3 // 2 * 2
    chunks = [pcm[:size], pcm[size : 2 * size], pcm[2 * size :]]
    for seq, chunk in enumerate(chunks):
        last = seq == len(chunks) - 1
        payload = TtsAudio(
            turn_id=turn_id,
            seq=seq,
            pcm=chunk,
            sample_rate=22050,
            final=last,
            end_call=end_call and last,
            text=text,
        )
        await bus.publish(topics.node_inbox(answered.media_node), payload, cause=answered)
        await asyncio.sleep(0.05)


async def test_dial_converse_and_bot_hangup(watcher: Watcher, simulator: tuple[int, Path]) -> None:
    _, sim_log = simulator
    contact_id = await _dial(watcher.bus, "+15550100002")

    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 90, "ANSWERED")
    assert answered.payload.sample_rate == 16000
    assert answered.envelope.media_node.endswith("-w0")
    assert answered.envelope.tenant_id == "demo" and answered.envelope.call_id
    call_id = answered.envelope.call_id
    seen_kinds = [e.payload.kind for e in watcher.events if e.envelope.call_id == call_id]
    assert Kind.DIALING in seen_kinds and Kind.RINGING in seen_kinds

    await _say(watcher.bus, answered.envelope, "turn-1", "Hello, this is Alex from Acme Bank. How are you?")
    started = await watcher.wait_for(_lifecycle(contact_id, Kind.PLAYBACK_STARTED, "turn-1"), 20, "PLAYBACK")
    stages = [m.stage for m in started.envelope.marks]
    assert "telephony.first_audio" in stages
    assert stages.index("telephony.in") < stages.index("telephony.first_audio")

    # the persona waits for the bot's silence, then says its line; the worker end-points it
    utt = await watcher.wait_for(
        lambda e: (
            isinstance(e.payload, AudioUtterance) and e.envelope.call_id == call_id and e.payload.last_part
        ),
        30,
        "AudioUtterance",
    )
    seconds = len(utt.payload.pcm) / 2 / utt.payload.sample_rate
    assert utt.payload.sample_rate == 16000
    assert 1.0 < seconds < 6.0, seconds
    assert utt.payload.speech_end_us > utt.payload.speech_start_us
    speech_end = [m for m in utt.envelope.marks if m.stage == "telephony.speech_end"]
    assert speech_end and speech_end[0].at_us == utt.payload.speech_end_us

    events = [e for e in _read_log(sim_log) if e.get("persona") == "not-interested"]
    kinds = [e["event"] for e in events]
    assert "bot_audio_started" in kinds and "line_started" in kinds
    line = next(e for e in events if e["event"] == "line_started")
    assert line["text"] == "No thanks, I am not interested."
    # the utterance is the persona's line: it starts around when the line was sent (loopback, jitter buffer)
    assert abs(utt.payload.speech_start_us - line["at_us"]) < 1_000_000

    await _say(watcher.bus, answered.envelope, "turn-2", "I understand. Goodbye.", end_call=True)
    await watcher.wait_for(_lifecycle(contact_id, Kind.PLAYBACK_FINISHED, "turn-2"), 20, "PLAYBACK_FINISHED")
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED")
    assert ended.payload.hangup_by == "bot"
    assert ended.payload.answered and ended.payload.duration_s > 1.0
    assert ended.payload.attempt == 1

    deadline = time.monotonic() + 10
    while not any(
        e["event"] == "call_ended" for e in _read_log(sim_log) if e.get("persona") == "not-interested"
    ):
        assert time.monotonic() < deadline, "simulator did not see the hangup"
        await asyncio.sleep(0.1)
    sim_end = next(
        e for e in _read_log(sim_log) if e["event"] == "call_ended" and e["persona"] == "not-interested"
    )
    assert sim_end["hangup_by"] == "bot"


async def test_no_answer_ends_with_sip_cause(watcher: Watcher) -> None:
    contact_id = await _dial(watcher.bus, "+15550100004")
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 60, "ENDED")
    assert ended.payload.sip_code == 480
    assert not ended.payload.answered and ended.payload.duration_s == 0
    assert ended.payload.hangup_by == "customer"
    kinds = [e.payload.kind for e in watcher.events if e.envelope.contact_id == contact_id]
    assert Kind.ANSWERED not in kinds and Kind.RINGING in kinds


def _worker_log(log: Path, event: str) -> list[dict]:
    lines = []
    for raw in log.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if record.get("event") == event:
                lines.append(record)
    return lines


async def test_ring_timeout_cancels_the_call(watcher: Watcher) -> None:
    contact_id = await _dial(watcher.bus, RINGS_FOREVER)
    ringing = await watcher.wait_for(_lifecycle(contact_id, Kind.RINGING), 60, "RINGING")
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), RING_TIMEOUT_S + 15, "ENDED")
    waited = (ended.envelope.occurred_at_us - ringing.envelope.occurred_at_us) / 1e6
    assert RING_TIMEOUT_S - 1 < waited < RING_TIMEOUT_S + 3
    assert ended.payload.sip_code == 487  # Request Terminated: our CANCEL
    assert ended.payload.hangup_by == "bot" and not ended.payload.answered


async def test_inbound_call_is_answered_for_the_inbound_campaign(watcher: Watcher, supervisor) -> None:
    _, log = supervisor
    sip_port = _worker_log(log, "media worker ready")[-1]["sip_port"]
    sipp = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uac", "-s", "+15550100099", "-m", "1", "-d", "1500", "-nostdin",
        "-timeout", "30s", "-timeout_error", "-i", "127.0.0.1", f"127.0.0.1:{sip_port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(sipp.wait(), 40) == 0

    def inbound(kind: int):
        return lambda e: (
            isinstance(e.payload, CallLifecycle)
            and e.payload.direction == CallLifecycle.INBOUND
            and e.payload.contact.phone_e164 == "sipp"
            and e.payload.kind == kind
        )

    answered = await watcher.wait_for(inbound(Kind.ANSWERED), 20, "inbound ANSWERED")
    assert answered.envelope.campaign_id == "acme-card" and answered.envelope.tenant_id == "demo"
    assert answered.envelope.media_node.endswith("-w0")
    ended = await watcher.wait_for(inbound(Kind.ENDED), 20, "inbound ENDED")
    assert ended.envelope.call_id == answered.envelope.call_id
    assert ended.payload.hangup_by == "customer" and ended.payload.answered


async def test_dead_worker_calls_end_and_worker_restarts(watcher: Watcher, supervisor) -> None:
    _, log = supervisor
    pid = _worker_log(log, "media worker started")[-1]["pid"]
    readies = len(_worker_log(log, "media worker ready"))
    contact_id = await _dial(watcher.bus, "+15550100001")
    await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")

    os.kill(pid, signal.SIGKILL)
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED after worker death")
    assert ended.payload.sip_reason == "media worker died"
    assert ended.payload.hangup_by == "network" and ended.payload.answered
    assert ended.envelope.producer == "telephony"

    deadline = time.monotonic() + 30
    while len(_worker_log(log, "media worker ready")) <= readies:
        assert time.monotonic() < deadline, "worker was not restarted"
        await asyncio.sleep(0.2)
    # the restarted worker takes calls, and a HANGUP command ends one at once
    contact_id = await _dial(watcher.bus, "+15550100003")
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED after restart")
    hangup = CallCommand(kind=CallCommand.HANGUP, immediate=True, reason="test")
    await watcher.bus.publish(
        topics.node_inbox(answered.envelope.media_node), hangup, cause=answered.envelope
    )
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED after HANGUP")
    assert ended.payload.hangup_by == "bot" and ended.payload.answered
