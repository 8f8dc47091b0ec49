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
BARGES_IN, BACKCHANNELS, PRESSES_KEYS = "+15550100011", "+15550100012", "+15550100013"
WANTS_AGENT = "+15550100014"
MACHINE, SAYS_HELLO = "+15550100015", "+15550100016"
AGENT_LINE = "Hello, this is Sam from customer service. How can I help?"
QUESTION = "Wait, what is the annual fee?"
LONG_REPLY = (
    "Hello, this is Alex from Acme Bank. We have a new cash back card for you. It gives two percent "
    "cash back on every purchase, it has no annual fee, and you can apply in five minutes on our website."
)
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
    personas[BARGES_IN] = {"name": "barges-in", "lines": [{"say": QUESTION, "over_bot_after_s": 1.5}]}
    personas[BACKCHANNELS] = {"name": "backchannels", "lines": [{"say": "Uh-huh.", "over_bot_after_s": 1.5}]}
    personas[WANTS_AGENT] = {"name": "wants-agent", "patience_s": 60}
    personas[MACHINE] = {
        "name": "machine",
        "greet": "Hi, you have reached Ada. I cannot take your call. Please leave a message after the tone.",
        "greet_beep_hz": 1000,
    }
    personas[SAYS_HELLO] = {"name": "says-hello", "greet": "Hello?"}
    personas["agent"] = {
        "name": "agent",
        "answer_delay_s": 0.5,
        "speak_first_after_s": 0.5,
        "lines": [AGENT_LINE],
    }
    personas["agent-away"] = {"name": "agent-away", "answer": False, "answer_delay_s": 1.0}
    personas[PRESSES_KEYS] = {
        "name": "presses-keys",
        "speak_first_after_s": 1.0,
        "lines": [{"dtmf": "12#", "method": "rfc2833"}, {"dtmf": "7", "method": "info"}],
    }
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
    campaign["recording"] = {"enabled": True, "retention_days": 30}
    campaign["voicemail"] = {"detect": True, "on_machine": "leave_message", "message": "Please call us back."}
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
        "VOICEBOT_TELEPHONY_RECORDINGS_DIR": str(folder / "recordings"),
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
    line = next(e for e in events if e["event"] == "line_started" and e["line"] == 0)  # after its "Hello?"
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


async def test_inbound_call_waits_for_routing_then_runs_the_campaign(
    watcher: Watcher, supervisor: Node
) -> None:
    """An inbound call is answered unbound (the IVR's to route, on the number dialled); ROUTE binds it to a
    campaign and its bot flow starts with a second ANSWERED under that campaign."""
    log = supervisor.log
    sip_port = _worker_log(log, "media worker ready")[-1]["sip_port"]
    sipp = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uac", "-s", "+15550100099", "-m", "1", "-d", "4000", "-nostdin",
        "-timeout", "30s", "-timeout_error", "-i", "127.0.0.1", f"127.0.0.1:{sip_port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip

    def inbound(kind: int, campaign: str = ""):
        return lambda e: (
            isinstance(e.payload, CallLifecycle)
            and e.payload.direction == CallLifecycle.INBOUND
            and e.payload.contact.phone_e164 == "sipp"
            and e.payload.kind == kind
            and e.envelope.campaign_id == campaign
        )

    answered = await watcher.wait_for(inbound(Kind.ANSWERED), 20, "inbound ANSWERED")
    assert answered.envelope.tenant_id == "" and answered.payload.called_number == "+15550100099"
    assert answered.envelope.media_node.endswith("-w0")
    route = CallCommand(kind=CallCommand.ROUTE, target="acme-card", reason="test")
    await watcher.bus.publish(topics.node_inbox(answered.envelope.media_node), route, cause=answered.envelope)
    bound = await watcher.wait_for(inbound(Kind.ANSWERED, "acme-card"), 10, "ANSWERED under the campaign")
    assert bound.envelope.call_id == answered.envelope.call_id and bound.envelope.tenant_id == "demo"
    assert bound.payload.called_number == "+15550100099"
    assert await asyncio.wait_for(sipp.wait(), 40) == 0
    ended = await watcher.wait_for(inbound(Kind.ENDED, "acme-card"), 20, "inbound ENDED")
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


async def test_customer_talking_over_the_bot_cuts_the_reply(
    watcher: Watcher, simulator: tuple[int, Path]
) -> None:
    """Barge-in: the bot stops within a fraction of a second of the customer's speech onset, upstream is
    told which reply was cut (BARGE_IN) and the customer's words still reach ASR as an utterance."""
    _, sim_log = simulator
    contact_id = await _dial(watcher.bus, BARGES_IN)
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")
    await watcher.wait_for(_lifecycle(contact_id, Kind.AMD_VERDICT), 15, "AMD_VERDICT")  # then the bot speaks
    call_id = answered.envelope.call_id
    await _say(watcher.bus, answered.envelope, "long", LONG_REPLY)
    barge = await watcher.wait_for(_lifecycle(contact_id, Kind.BARGE_IN, "long"), 30, "BARGE_IN")
    assert 1000 <= barge.payload.played_ms <= 4000, barge.payload.played_ms
    finished = await watcher.wait_for(_lifecycle(contact_id, Kind.PLAYBACK_FINISHED, "long"), 5, "FINISHED")
    assert finished.payload.interrupted
    onset = await watcher.wait_for(_lifecycle(contact_id, Kind.SPEECH_STARTED), 5, "SPEECH_STARTED")
    assert onset.payload.speech_start_us > 0

    line = await _sim_event(sim_log, "barges-in", "line_started", answered.envelope.occurred_at_us)
    stopped = await _sim_event(sim_log, "barges-in", "bot_audio_ended", line["at_us"] - 5_000_000)
    stop_ms = (stopped["at_us"] - line["at_us"]) / 1000
    print(f"barge-in: bot audio stopped {stop_ms:.0f} ms after the customer's speech onset")
    assert stop_ms < 600, stop_ms  # the reply had ~10 s left: it stopped while the customer spoke
    utt = await watcher.wait_for(
        lambda e: isinstance(e.payload, AudioUtterance) and e.envelope.call_id == call_id, 20, "utterance"
    )
    assert len(utt.payload.pcm) / 32000 > 1.0  # the question itself, not a fragment
    await _hang_up(watcher.bus, answered.envelope)
    await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED")


async def test_backchannel_does_not_stop_the_reply(watcher: Watcher, simulator: tuple[int, Path]) -> None:
    """ "Uh-huh" over the bot pauses it for a moment at most: the whole reply plays, no turn is taken."""
    _, sim_log = simulator
    contact_id = await _dial(watcher.bus, BACKCHANNELS)
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")
    await watcher.wait_for(_lifecycle(contact_id, Kind.AMD_VERDICT), 15, "AMD_VERDICT")  # then the bot speaks
    call_id = answered.envelope.call_id
    spoken_s = len(speak(LONG_REPLY)) / 32000
    await _say(watcher.bus, answered.envelope, "long", LONG_REPLY)
    finished = await watcher.wait_for(
        _lifecycle(contact_id, Kind.PLAYBACK_FINISHED, "long"), spoken_s + 20, "PLAYBACK_FINISHED"
    )
    assert not finished.payload.interrupted
    line = await _sim_event(sim_log, "backchannels", "line_started", answered.envelope.occurred_at_us)
    kinds = [e.payload.kind for e in watcher.events if e.envelope.call_id == call_id]
    assert Kind.BARGE_IN not in kinds
    utterances = [
        e for e in watcher.events if isinstance(e.payload, AudioUtterance) and e.envelope.call_id == call_id
    ]
    assert not utterances, "a backchannel became a turn"
    heard = await _sim_event(sim_log, "backchannels", "bot_audio_ended", line["at_us"])
    started = await _sim_event(sim_log, "backchannels", "bot_audio_started", answered.envelope.occurred_at_us)
    assert (heard["at_us"] - started["at_us"]) / 1e6 >= spoken_s - 0.5  # heard to its end
    await _hang_up(watcher.bus, answered.envelope)
    await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED")


async def test_keypad_digits_in_and_out(watcher: Watcher, simulator: tuple[int, Path]) -> None:
    """RFC 2833 digits gathered by COLLECT_DTMF until '#'; a single SIP INFO digit on its own; the bot's
    own digits reach the customer."""
    _, sim_log = simulator
    contact_id = await _dial(watcher.bus, PRESSES_KEYS)
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")
    inbox = topics.node_inbox(answered.envelope.media_node)
    collect = CallCommand(kind=CallCommand.COLLECT_DTMF, max_digits=4, timeout_ms=3000)
    await watcher.bus.publish(inbox, collect, cause=answered.envelope)
    menu = await watcher.wait_for(_lifecycle(contact_id, Kind.DTMF), 20, "DTMF")
    assert (menu.payload.dtmf, menu.payload.dtmf_method) == ("12", "rfc2833")
    # the persona presses its next key after the bot's next (short) reply
    await _say(watcher.bus, answered.envelope, "ack", "Thank you.")
    key = await watcher.wait_for(
        lambda e: _lifecycle(contact_id, Kind.DTMF)(e) and e.payload.dtmf_method == "info", 20, "INFO DTMF"
    )
    assert key.payload.dtmf == "7"
    send = CallCommand(kind=CallCommand.SEND_DTMF, digits="9*", method="rfc2833")
    await watcher.bus.publish(inbox, send, cause=answered.envelope)
    got = await _sim_event(sim_log, "presses-keys", "dtmf_received", answered.envelope.occurred_at_us)
    assert got["digit"] == "9"
    await _hang_up(watcher.bus, answered.envelope)
    await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED")


async def _transfer(bus: Bus, answered: Envelope, target: str, mode: str, summary: str = "") -> None:
    command = CallCommand(kind=CallCommand.TRANSFER, target=target, mode=mode, summary=summary)
    await bus.publish(topics.node_inbox(answered.media_node), command, cause=answered)


async def test_blind_transfer_hands_the_customer_to_the_agent(
    watcher: Watcher, simulator: tuple[int, Path]
) -> None:
    """REFER: the customer's phone calls the agent; once the agent answered, the bot's leg ends."""
    port, sim_log = simulator
    contact_id = await _dial(watcher.bus, WANTS_AGENT)
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")
    since = answered.envelope.occurred_at_us
    await _transfer(watcher.bus, answered.envelope, f"sip:agent@127.0.0.1:{port}", "blind")
    done = await watcher.wait_for(_lifecycle(contact_id, Kind.TRANSFERRED), 30, "TRANSFERRED")
    assert (done.payload.transfer_mode, done.payload.transfer_target) == (
        "blind",
        f"sip:agent@127.0.0.1:{port}",
    )
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED")
    assert ended.payload.sip_reason == "transferred" and ended.payload.hangup_by == "bot"
    asked = await _sim_event(sim_log, "wants-agent", "transfer_requested", since)
    assert asked["to_user"] == "agent"
    await _sim_event(sim_log, "agent", "answered", since)


async def test_warm_transfer_briefs_the_agent_and_bridges(
    watcher: Watcher, simulator: tuple[int, Path]
) -> None:
    """The bot calls the agent with a summary, then the customer hears the agent; the agent's hang-up
    ends the call. Both legs and the agent are in the call's recording."""
    port, sim_log = simulator
    contact_id = await _dial(watcher.bus, WANTS_AGENT)
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")
    since = answered.envelope.occurred_at_us
    summary = "Customer Test. Said: I want to talk to a person about my card."
    await _transfer(watcher.bus, answered.envelope, f"sip:agent@127.0.0.1:{port}", "warm", summary)
    ringing = await _sim_event(sim_log, "agent", "ringing", since, timeout=20)
    assert ringing["summary"] == summary
    bridged = await watcher.wait_for(_lifecycle(contact_id, Kind.BRIDGED), 30, "BRIDGED")
    assert bridged.payload.transfer_mode == "warm"
    # the agent's greeting reaches the customer through the bridge
    spoke = await _sim_event(sim_log, "agent", "line_started", since, timeout=20)
    heard = await _sim_event(
        sim_log, "wants-agent", "bot_audio_started", spoke["at_us"] - 100_000, timeout=20
    )
    assert heard["at_us"] - spoke["at_us"] < 1_000_000
    ended = await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 40, "ENDED")
    assert ended.payload.hangup_by == "agent"
    ready = await watcher.wait_for(_lifecycle(contact_id, Kind.RECORDING_READY), 10, "RECORDING_READY")
    _assert_recording(ready.payload.recording_uri, min_s=2.0)


async def test_unanswered_transfer_keeps_the_customer_with_the_bot(
    watcher: Watcher, simulator: tuple[int, Path]
) -> None:
    port, _ = simulator
    contact_id = await _dial(watcher.bus, WANTS_AGENT)
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")
    await _transfer(watcher.bus, answered.envelope, f"sip:agent-away@127.0.0.1:{port}", "warm")
    failed = await watcher.wait_for(_lifecycle(contact_id, Kind.TRANSFER_FAILED), 30, "TRANSFER_FAILED")
    assert failed.payload.sip_code == 480
    await asyncio.sleep(1.0)
    kinds = [e.payload.kind for e in watcher.events if e.envelope.contact_id == contact_id]
    assert Kind.ENDED not in kinds  # the customer is still on the line, with the bot
    await _say(watcher.bus, answered.envelope, "sorry", "I am sorry, nobody is available right now.")
    await watcher.wait_for(_lifecycle(contact_id, Kind.PLAYBACK_FINISHED, "sorry"), 20, "bot still speaks")
    await _hang_up(watcher.bus, answered.envelope)
    await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED")


def _assert_recording(uri: str, min_s: float) -> None:
    """A complete WAV (header written) with speech from both sides in it."""
    import wave
    from urllib.parse import urlparse

    import numpy as np

    path = Path(urlparse(uri).path)
    assert path.is_file(), uri
    with wave.open(str(path), "rb") as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    samples = np.frombuffer(frames, dtype="<i2")
    assert len(samples) / rate >= min_s
    assert np.abs(samples).max() > 1000  # not silence


async def test_answering_machine_is_detected_and_its_beep_heard(watcher: Watcher) -> None:
    contact_id = await _dial(watcher.bus, MACHINE)
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")
    verdict = await watcher.wait_for(_lifecycle(contact_id, Kind.AMD_VERDICT), 15, "AMD_VERDICT")
    assert verdict.payload.amd == CallLifecycle.MACHINE, verdict.payload
    assert verdict.payload.amd_reason in ("long greeting", "many phrases")
    beep = await watcher.wait_for(_lifecycle(contact_id, Kind.BEEP), 20, "BEEP")
    assert "Hz tone" in beep.payload.amd_reason
    assert beep.envelope.occurred_at_us > verdict.envelope.occurred_at_us
    await _hang_up(watcher.bus, answered.envelope)
    await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED")


async def test_a_person_saying_hello_is_human_within_two_seconds_of_their_hello(watcher: Watcher) -> None:
    contact_id = await _dial(watcher.bus, SAYS_HELLO)
    answered = await watcher.wait_for(_lifecycle(contact_id, Kind.ANSWERED), 60, "ANSWERED")
    verdict = await watcher.wait_for(_lifecycle(contact_id, Kind.AMD_VERDICT), 15, "AMD_VERDICT")
    assert verdict.payload.amd == CallLifecycle.HUMAN, verdict.payload
    assert (verdict.envelope.occurred_at_us - answered.envelope.occurred_at_us) / 1e6 < 3.0
    await _hang_up(watcher.bus, answered.envelope)
    await watcher.wait_for(_lifecycle(contact_id, Kind.ENDED), 20, "ENDED")
