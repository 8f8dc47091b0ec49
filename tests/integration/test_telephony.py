"""Telephony on the real broker and real SIP on loopback: the supervisor dials simulated customers.

The supervisor and the simulator run as subprocesses (as in production); the test plays the other
services: it publishes the DialCommand and the bot's TtsAudio, and reads lifecycle and utterances.
The node has one worker with one call slot, so back-pressure is visible; the graceful-stop test runs
last (it stops the node; a later test would start it again).
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
from aiokafka import AIOKafkaConsumer, TopicPartition

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
from voicebot.observability import mask_phone
from voicebot.simulator import speak

Kind = CallLifecycle.Kind
PERSONAS = REPO_ROOT / "demo" / "personas.yaml"
RINGS_FOREVER = "+15550100009"
RING_TIMEOUT_S = 5
CALLER_ID = "+15559990042"
DRAIN_S = 3.0


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


class Node:
    """`python -m services.telephony` (one media worker, one call slot) dialling the simulator."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_start = 0

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until this run of the node consumes dials and its worker is ready."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, "telephony node exited"
            with self.log.open("rb") as f:
                f.seek(self.log_start)
                records = _json_lines(f.read().decode(errors="replace"))
            node_ready = any(r["event"] == "service ready" and "worker" not in r for r in records)
            if node_ready and any(r["event"] == "media worker ready" for r in records):
                return
            assert time.monotonic() < deadline, "telephony node not ready"
            await asyncio.sleep(0.2)

    def ensure_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.telephony"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@pytest.fixture(scope="module")
def node(
    kafka_bootstrap: str, simulator: tuple[int, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    port, _ = simulator
    folder = tmp_path_factory.mktemp("tel")
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
        "VOICEBOT_TELEPHONY_CALLS_PER_WORKER": "1",
        "VOICEBOT_TELEPHONY_DRAIN_S": str(DRAIN_S),
        "VOICEBOT_NODE_ID": f"test-{uuid.uuid4().hex[:8]}",
        "VOICEBOT_HTTP_PORT": "0",
        "VOICEBOT_CAMPAIGNS_DIR": str(folder / "campaigns"),
    }
    node = Node(env, folder / "telephony.log")
    node.ensure_running()  # boots while the watcher joins its consumer groups
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
async def supervisor(node: Node) -> Node:
    """The node, ready; started again if a test stopped it."""
    node.ensure_running()
    await node.wait_ready()
    return node


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


@pytest.fixture(scope="module")
async def module_watcher(kafka_bootstrap: str) -> AsyncIterator[Watcher]:
    """One watcher for the module: joining new consumer groups for every test costs ~10 s each."""
    w = Watcher(Settings(kafka_bootstrap=kafka_bootstrap, handler_retries=2))
    await w.bus.start()
    try:
        yield w
    finally:
        await w.bus.stop()


@pytest.fixture
def watcher(node: Node, module_watcher: Watcher, supervisor: Node) -> Watcher:
    return module_watcher


def _lifecycle(contact_id: str, kind: int, turn_id: str = ""):
    def match(e: Event) -> bool:
        return (
            isinstance(e.payload, CallLifecycle)
            and e.envelope.contact_id == contact_id
            and e.payload.kind == kind
            and (not turn_id or e.payload.turn_id == turn_id)
        )

    return match


async def _dial(bus: Bus, phone: str, caller_id: str = "") -> str:
    contact_id = f"c-{uuid.uuid4().hex[:10]}"
    cause = Envelope(tenant_id="demo", campaign_id="acme-card", contact_id=contact_id)
    cmd = DialCommand(
        contact=Contact(contact_id=contact_id, phone_e164=phone, name="Test"), attempt=1, caller_id=caller_id
    )
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
    contact_id = await _dial(watcher.bus, "+15550100002", caller_id=CALLER_ID)

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
    # the campaign's caller ID is what the customer's phone shows (the From user)
    assert next(e for e in events if e["event"] == "ringing")["from_user"] == mask_phone(CALLER_ID)
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


async def test_no_answer_ends_with_sip_cause(watcher: Watcher, simulator: tuple[int, Path]) -> None:
    _, sim_log = simulator
    contact_id = await _dial(watcher.bus, "+15550100004")
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 60, "ENDED")
    assert ended.payload.sip_code == 480
    assert not ended.payload.answered and ended.payload.duration_s == 0
    assert ended.payload.hangup_by == "customer"
    kinds = [e.payload.kind for e in watcher.events if e.envelope.contact_id == contact_id]
    assert Kind.ANSWERED not in kinds and Kind.RINGING in kinds
    # a dial without a caller ID presents the worker's account
    ringing = [e for e in _read_log(sim_log) if e["event"] == "ringing" and e["persona"] == "no-answer"]
    assert ringing[-1]["from_user"] == "bot-w0"


def _json_lines(text: str) -> list[dict]:
    """The node's structlog records (pjsua prints plain lines into the same stream)."""
    records = []
    for raw in text.splitlines():
        if raw.startswith("{"):
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and "event" in record:
                records.append(record)
    return records


def _worker_log(log: Path, event: str) -> list[dict]:
    return [r for r in _json_lines(log.read_text(errors="replace")) if r["event"] == event]


async def test_ring_timeout_cancels_the_call(watcher: Watcher) -> None:
    contact_id = await _dial(watcher.bus, RINGS_FOREVER)
    ringing = await watcher.wait_for(_lifecycle(contact_id, Kind.RINGING), 60, "RINGING")
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), RING_TIMEOUT_S + 15, "ENDED")
    waited = (ended.envelope.occurred_at_us - ringing.envelope.occurred_at_us) / 1e6
    assert RING_TIMEOUT_S - 1 < waited < RING_TIMEOUT_S + 3
    assert ended.payload.sip_code == 487  # Request Terminated: our CANCEL
    assert ended.payload.hangup_by == "bot" and not ended.payload.answered


async def test_inbound_call_is_answered_for_the_inbound_campaign(watcher: Watcher, supervisor: Node) -> None:
    log = supervisor.log
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


async def test_dead_worker_calls_end_and_worker_restarts(watcher: Watcher, supervisor: Node) -> None:
    log = supervisor.log
    pid = _worker_log(log, "media worker started")[-1]["pid"]
    readies = len(_worker_log(log, "media worker ready"))
    contact_id = await _dial(watcher.bus, "+15550100001")
    await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")

    os.kill(pid, signal.SIGKILL)
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED after worker death")
    assert ended.payload.sip_reason == "media worker died"
    assert ended.payload.hangup_by == "network" and ended.payload.answered
    assert ended.envelope.producer == "telephony"

    await _worker_restarted(log, readies)
    # the restarted worker takes calls; a SIGTERM to the worker alone hangs its calls up, reports them
    # and exits 0, and the supervisor starts it again
    pid = _worker_log(log, "media worker started")[-1]["pid"]
    readies = len(_worker_log(log, "media worker ready"))
    contact_id = await _dial(watcher.bus, "+15550100003")
    await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED after restart")
    os.kill(pid, signal.SIGTERM)
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), DRAIN_S + 5, "ENDED on SIGTERM")
    assert ended.payload.sip_reason == "node shutting down"
    assert ended.payload.hangup_by == "bot" and ended.payload.answered
    await _worker_restarted(log, readies)
    assert _worker_log(log, "media worker exited")[-1]["code"] == 0


async def _worker_restarted(log: Path, readies: int) -> None:
    deadline = time.monotonic() + 30
    while len(_worker_log(log, "media worker ready")) <= readies:
        assert time.monotonic() < deadline, "worker was not restarted"
        await asyncio.sleep(0.2)


async def _hang_up(bus: Bus, answered: Envelope, immediate: bool = True) -> None:
    command = CallCommand(kind=CallCommand.HANGUP, immediate=immediate, reason="test")
    await bus.publish(topics.node_inbox(answered.media_node), command, cause=answered)


async def _sim_event(sim_log: Path, persona: str, event: str, since_us: int, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for record in _read_log(sim_log):
            if record["event"] == event and record.get("persona") == persona and record["at_us"] >= since_us:
                return record
        assert time.monotonic() < deadline, f"simulator logged no {event} for {persona}"
        await asyncio.sleep(0.1)


async def test_second_dial_waits_for_the_free_slot(watcher: Watcher, simulator: tuple[int, Path]) -> None:
    """One worker with one slot: the second DialCommand is only dialled once the first call ended."""
    _, sim_log = simulator
    since = time.time_ns() // 1000
    first = await _dial(watcher.bus, "+15550100003")
    answered = await watcher.wait_for(_lifecycle(first, Kind.ANSWERED), 60, "first ANSWERED")
    second = await _dial(watcher.bus, "+15550100002")  # keyed by contact: maybe another partition
    await asyncio.sleep(2.0)
    assert not [e for e in watcher.events if e.envelope.contact_id == second], "dialled with no free slot"

    await _hang_up(watcher.bus, answered.envelope)
    ended = await watcher.wait_for(_lifecycle(first, Kind.ENDED), 20, "first ENDED")
    dialing = await watcher.wait_for(_lifecycle(second, Kind.DIALING), 20, "second DIALING")
    assert dialing.envelope.occurred_at_us >= ended.envelope.occurred_at_us
    first_end = await _sim_event(sim_log, "opt-out", "call_ended", since)
    second_ring = await _sim_event(sim_log, "not-interested", "ringing", since)
    assert second_ring["at_us"] > first_end["at_us"]

    answered = await watcher.wait_for(_lifecycle(second, Kind.ANSWERED), 30, "second ANSWERED")
    await _hang_up(watcher.bus, answered.envelope)
    await watcher.wait_for(_lifecycle(second, Kind.ENDED), 20, "second ENDED")


async def test_hangup_waits_for_queued_audio(watcher: Watcher, simulator: tuple[int, Path]) -> None:
    _, sim_log = simulator
    contact_id = await _dial(watcher.bus, "+15550100001")
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")
    text = "Thank you for your time today. We will send the details by post. Goodbye."
    spoken_s = len(speak(text)) / 2 / 16000
    await _say(watcher.bus, answered.envelope, "bye", text)
    await _hang_up(watcher.bus, answered.envelope, immediate=False)

    started = await watcher.wait_for(_lifecycle(contact_id, Kind.PLAYBACK_STARTED, "bye"), 20, "STARTED")
    finished = await watcher.wait_for(
        _lifecycle(contact_id, Kind.PLAYBACK_FINISHED, "bye"), spoken_s + 20, "PLAYBACK_FINISHED"
    )
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED")
    assert ended.envelope.occurred_at_us >= finished.envelope.occurred_at_us
    played_s = (ended.envelope.occurred_at_us - started.envelope.occurred_at_us) / 1e6
    assert played_s >= spoken_s - 0.2, (played_s, spoken_s)
    assert ended.payload.hangup_by == "bot" and ended.payload.answered
    # the customer heard the reply until its end, then the BYE
    heard = await _sim_event(sim_log, "interested", "bot_audio_started", answered.envelope.occurred_at_us)
    hung_up = await _sim_event(sim_log, "interested", "call_ended", answered.envelope.occurred_at_us)
    assert hung_up["hangup_by"] == "bot"
    assert (hung_up["at_us"] - heard["at_us"]) / 1e6 >= spoken_s - 0.2


async def test_barge_in_after_a_waiting_hangup_ends_the_call(watcher: Watcher) -> None:
    """HANGUP waits for the queued reply; a STOP_PLAYBACK then drops that reply, so the call ends now."""
    contact_id = await _dial(watcher.bus, "+15550100003")
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")
    text = "Thank you for your time today. We will send the details by post. Goodbye."
    spoken_s = len(speak(text)) / 2 / 16000
    await _say(watcher.bus, answered.envelope, "cut", text)
    await _hang_up(watcher.bus, answered.envelope, immediate=False)
    await watcher.wait_for(_lifecycle(contact_id, Kind.PLAYBACK_STARTED, "cut"), 20, "PLAYBACK_STARTED")
    stop = CallCommand(kind=CallCommand.STOP_PLAYBACK, reason="barge-in")
    await watcher.bus.publish(topics.node_inbox(answered.envelope.media_node), stop, cause=answered.envelope)
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 10, "ENDED")
    assert ended.payload.hangup_by == "bot"
    assert (ended.envelope.occurred_at_us - answered.envelope.occurred_at_us) / 1e6 < spoken_s


async def _dial_offsets(bootstrap: str, contact_id: str) -> tuple[int, int | None]:
    """The offset of a contact's DialCommand and the telephony group's committed offset on its partition
    (read without joining the group)."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    group = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="telephony", enable_auto_commit=False)
    await reader.start()
    await group.start()
    try:
        await reader.topics()  # loads the metadata
        numbers = reader.partitions_for_topic(topics.DIAL_COMMANDS) or set()
        parts = [TopicPartition(topics.DIAL_COMMANDS, n) for n in numbers]
        reader.assign(parts)
        await reader.seek_to_beginning(*parts)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for tp, records in (await reader.getmany(timeout_ms=500)).items():
                for record in records:
                    if Envelope.FromString(record.value).contact_id == contact_id:
                        return record.offset, await group.committed(tp)
        raise AssertionError("dial command not found")
    finally:
        await reader.stop()
        await group.stop()


async def test_node_stop_hangs_up_live_calls_and_keeps_waiting_dials(
    watcher: Watcher, supervisor: Node, simulator: tuple[int, Path], kafka_bootstrap: str
) -> None:
    """SIGTERM with a call live and a dial waiting: the call ends as "node shutting down" before the
    bus stops, the processes exit 0, and the waiting dial's offset stays uncommitted for the next node."""
    _, sim_log = simulator
    live = await _dial(watcher.bus, "+15550100001")
    answered = await watcher.wait_for(_lifecycle(live, Kind.ANSWERED), 60, "ANSWERED")
    waiting = await _dial(watcher.bus, "+15550100002")
    await asyncio.sleep(1.0)  # the node reads it and waits for a free slot

    assert supervisor.proc is not None
    supervisor.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    ended = await watcher.wait_for(_lifecycle(live, Kind.ENDED), DRAIN_S + 5, "ENDED on stop")
    assert ended.payload.sip_reason == "node shutting down"
    assert ended.payload.hangup_by == "bot" and ended.payload.answered
    assert ended.envelope.call_id == answered.envelope.call_id
    sim_end = await _sim_event(sim_log, "interested", "call_ended", answered.envelope.occurred_at_us)
    assert sim_end["hangup_by"] == "bot" and sim_end["sip_code"] == 200

    code = await asyncio.to_thread(supervisor.proc.wait, 15)
    assert code == 0
    assert time.monotonic() - sent < DRAIN_S + 3
    stopped = _worker_log(supervisor.log, "media worker stopped")
    assert stopped and stopped[-1]["code"] == 0 and stopped[-1]["calls_left"] == 0
    assert not [e for e in watcher.events if e.envelope.contact_id == waiting]
    # (a restarted node would dial it; rejoining the group costs ~18 s on tansu, so the offset is checked)
    offset, committed = await _dial_offsets(kafka_bootstrap, waiting)
    assert committed is None or committed <= offset, (committed, offset)  # None: nothing committed there
