"""A telephony node behind its Kamailio front, called by sipp (tests/sipp/*.xml), on the real broker.

The node runs as in production (`python -m services.telephony`, its media workers, Kamailio) with an
elastic pool of 2 to 3 workers that retires an idle one after 3 s. sipp plays the customers: calls
with real RTP audio (G.711 A-law) spread over the workers, early hangups, CANCELs, more calls than
slots, malformed and fuzzed SIP. The test reads lifecycle events and utterances from the broker and the
node's log, and checks that every answered call ends with a lifecycle ENDED and no worker crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from services.telephony.worker import FRAME_MS
from voicebot import topics
from voicebot.bus import Bus, Event
from voicebot.config import REPO_ROOT, Settings
from voicebot.events import AudioUtterance, CallLifecycle
from voicebot.kamailio import free_udp_port

Kind = CallLifecycle.Kind
SIPP = REPO_ROOT / "tests" / "sipp"
PCAP = Path("/usr/share/sip-tester/g711a.pcap")
IDLE_RETIRE_S = 3
DECODER = json.JSONDecoder()
SLOTS = 3  # customer calls per worker (pjsua's 4, one kept for a warm transfer)

pytestmark = pytest.mark.skipif(
    not (os.path.exists("/usr/bin/sipp") and os.path.exists("/usr/sbin/kamailio") and PCAP.exists()),
    reason="needs Debian's sip-tester and kamailio (make install)",
)


def _json_lines(text: str) -> list[dict]:
    """The node's structlog records (pjsua and Kamailio print plain lines into the same stream)."""
    records = []
    for raw in text.splitlines():
        if raw.startswith("{"):  # another process may have written on the same line after the record
            with contextlib.suppress(ValueError):
                record = DECODER.raw_decode(raw)[0]
                if isinstance(record, dict) and "event" in record:
                    records.append(record)
    return records


class Node:
    """`python -m services.telephony` with its Kamailio front; the log is the node's and its workers'."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def records(self, event: str | None = None, since: int = 0) -> list[dict]:
        with self.log.open("rb") as f:
            f.seek(since)
            found = _json_lines(f.read().decode(errors="replace"))
        return [r for r in found if event is None or r["event"] == event]

    def mark(self) -> int:
        return self.log.stat().st_size

    @property
    def front(self) -> str:
        return self.records("sip front ready")[-1]["address"]

    def workers(self) -> dict[int, dict]:
        """index → {"pid", "sip_port"} of the workers running now."""
        started = {r["index"]: r["pid"] for r in self.records("media worker started")}
        ready = {r["index"]: r["sip_port"] for r in self.records("media worker ready")}
        gone = {(r["index"]) for r in self.records("media worker retired")}
        live = {}
        for index, pid in started.items():
            if index in ready and index not in gone and _alive(pid):
                live[index] = {"pid": pid, "sip_port": ready[index]}
        return live

    def metrics(self) -> str:
        port = next(r["http_port"] for r in self.records("service ready") if "worker" not in r)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    async def front_size(self, size: int, timeout: float) -> None:
        """Until the front's dispatcher list holds `size` workers (the last reload the node logged)."""
        deadline = time.monotonic() + timeout
        while True:
            sizes = [r["workers"] for r in self.records("sip front follows the pool")]
            if sizes and sizes[-1] == size:
                return
            assert time.monotonic() < deadline, f"front list never had {size} workers: {sizes[-5:]}"
            await asyncio.sleep(0.2)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.telephony"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return True


@pytest.fixture(scope="module")
def kafka_bootstrap(own_kafka_bootstrap: str) -> str:
    """This module's own broker (tests/conftest.py: own_kafka_bootstrap)."""
    return own_kafka_bootstrap


@pytest.fixture(scope="module")
def node(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    folder = tmp_path_factory.mktemp("sipload")
    env = {
        **os.environ,
        "VOICEBOT_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "VOICEBOT_TELEPHONY_SIP_PORT": "0",
        "VOICEBOT_TELEPHONY_WORKERS": "3",
        "VOICEBOT_TELEPHONY_WORKERS_MIN": "2",
        "VOICEBOT_TELEPHONY_CALLS_PER_WORKER": str(SLOTS),
        "VOICEBOT_TELEPHONY_SPAWN_FREE_SLOTS": "2",
        "VOICEBOT_TELEPHONY_IDLE_RETIRE_S": str(IDLE_RETIRE_S),
        "VOICEBOT_TELEPHONY_KAMAILIO": "1",
        "VOICEBOT_TELEPHONY_KAMAILIO_PORT": "0",
        "VOICEBOT_TELEPHONY_DRAIN_S": "3",
        "VOICEBOT_TELEPHONY_INBOUND_CAMPAIGN": "acme-card",  # no IVR here: every call is this campaign's
        "VOICEBOT_NODE_ID": f"load-{uuid.uuid4().hex[:8]}",
        "VOICEBOT_HTTP_PORT": "0",
    }
    node = Node(env, folder / "telephony.log")
    node.start()
    try:
        yield node
    finally:
        front_pid = (
            next((r["pid"] for r in node.records("sip front ready")), None) if node.log.exists() else None
        )
        code = node.stop()
        assert code == 0, f"node did not stop cleanly: {code}"
        if front_pid is not None:
            assert not _alive(front_pid), "Kamailio outlived its node"


@pytest.fixture
async def ready(node: Node) -> Node:
    """The node with its two minimum workers ready and listed in the front."""
    deadline = time.monotonic() + 60
    while len(node.workers()) < 2 or not node.records("sip front follows the pool"):
        assert node.proc is not None and node.proc.poll() is None, "telephony node exited"
        assert time.monotonic() < deadline, "telephony node not ready"
        await asyncio.sleep(0.2)
    await node.front_size(len(node.workers()), 10)
    return node


class Watcher:
    """Lifecycle events and utterances, as the other services would see them."""

    def __init__(self, settings: Settings) -> None:
        self.bus = Bus("test-sip-load", settings)
        self.events: list[Event] = []
        group = f"sl-{uuid.uuid4().hex}"

        @self.bus.on(topics.LIFECYCLE, CallLifecycle, group=group + "-l")
        @self.bus.on(topics.UTTERANCES, AudioUtterance, group=group + "-u")
        async def _seen(event: Event) -> None:
            self.events.append(event)

    def of(self, caller: str, kind: int) -> list[Event]:
        return [
            e
            for e in self.events
            if isinstance(e.payload, CallLifecycle)
            and e.payload.direction == CallLifecycle.INBOUND
            and e.payload.contact.phone_e164 == caller
            and e.payload.kind == kind
        ]

    async def until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)

    async def calls_ended(
        self, caller: str, answered: int, timeout: float = 30
    ) -> tuple[list[Event], list[Event]]:
        """The ANSWERED and ENDED events of `caller`'s calls, once each of the `answered` calls has ended."""
        await self.until(lambda: len(self.of(caller, Kind.ANSWERED)) >= answered, timeout, "ANSWERED")
        answered_ids = {e.envelope.call_id for e in self.of(caller, Kind.ANSWERED)}

        def all_ended() -> bool:
            return answered_ids <= {e.envelope.call_id for e in self.of(caller, Kind.ENDED)}

        await self.until(all_ended, timeout, "an ENDED for every answered call")
        return self.of(caller, Kind.ANSWERED), self.of(caller, Kind.ENDED)


@pytest.fixture(scope="module")
async def watcher(kafka_bootstrap: str) -> AsyncIterator[Watcher]:
    w = Watcher(Settings(kafka_bootstrap=kafka_bootstrap, handler_retries=2))
    await w.bus.start()
    try:
        yield w
    finally:
        await w.bus.stop()


def new_caller() -> str:
    return f"+1555{random.randrange(10**7):07d}"


async def sipp(
    scenario: str, target: str, *args: str, calls: int, rate: float = 10, tmp: Path, timeout: float = 60
) -> list[str]:
    """Run a scenario until `calls` calls are done (sipp exits 0 only if none failed); its outcome lines."""
    log = tmp / f"{scenario}-{uuid.uuid4().hex[:6]}.log"
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SIPP / scenario), "-m", str(calls), "-r", str(rate), "-l", str(calls),
        "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
        "-nostdin", "-trace_logs", "-log_file", str(log), "-trace_err", "-error_file", str(log) + ".err",
        "-timeout", f"{int(timeout)}s", "-timeout_error", *args, target,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout + 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    errors = Path(str(log) + ".err")
    detail = errors.read_text(errors="replace")[-3000:] if errors.exists() else err.decode()[-3000:]
    assert proc.returncode == 0, f"sipp {scenario} failed ({proc.returncode}):\n{detail}"
    return log.read_text().splitlines() if log.exists() else []


def outcomes(lines: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines:
        key = " ".join(w for w in line.split()[:2] if not re.match(r"\d+-\d+@", w))
        counts[key] = counts.get(key, 0) + 1
    return counts


def _metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_calls_with_audio_are_spread_over_workers(
    ready: Node, watcher: Watcher, tmp_path: Path
) -> None:
    caller = new_caller()
    frames_before = _metric(ready.metrics(), "voicebot_telephony_frame_lateness_seconds_count", '{kind="rx"}')
    lines = await sipp(
        "call_with_audio.xml", ready.front, "-key", "caller", caller, "-set", "plays", "1",
        calls=6, rate=4, tmp=tmp_path,
    )  # fmt: skip
    assert outcomes(lines) == {"answered": 6, "ended": 6}
    answered, ended = await watcher.calls_ended(caller, 6)
    assert len(answered) == 6 and len(ended) == 6
    # the front spread them: more than one worker took calls (round robin over two)
    assert len({e.envelope.media_node for e in answered}) >= 2
    assert all(e.payload.hangup_by == "customer" and e.payload.answered for e in ended)
    assert all(e.payload.duration_s > 5 for e in ended)  # the ~7 s recording was played
    assert all(e.envelope.campaign_id == "acme-card" for e in answered)  # the inbound campaign
    # the audio reached each call's VAD: the recording's speech came out as utterances
    call_ids = {e.envelope.call_id for e in answered}

    def spoken() -> bool:
        seen = {
            e.envelope.call_id
            for e in watcher.events
            if isinstance(e.payload, AudioUtterance) and e.payload.last_part and len(e.payload.pcm) > 16000
        }
        return call_ids <= seen

    await watcher.until(spoken, 15, "an utterance from every call")
    # frame timing reached the node's /metrics (the workers report it every second)
    await asyncio.sleep(1.5)
    frames = _metric(ready.metrics(), "voicebot_telephony_frame_lateness_seconds_count", '{kind="rx"}')
    assert frames - frames_before > 6 * 6 * (1000 // FRAME_MS)  # 6 calls, > 6 s each, every frame


async def test_early_hangup(ready: Node, watcher: Watcher, tmp_path: Path) -> None:
    caller = new_caller()
    lines = await sipp(
        "early_hangup.xml", ready.front, "-key", "caller", caller, "-d", "100", calls=4, tmp=tmp_path
    )
    assert outcomes(lines) == {"answered": 4, "ended": 4}
    _, ended = await watcher.calls_ended(caller, 4)
    assert all(e.payload.hangup_by == "customer" and e.payload.answered for e in ended)
    assert all(e.payload.duration_s < 2 for e in ended)


async def test_cancel(ready: Node, watcher: Watcher, tmp_path: Path) -> None:
    """CANCEL races the worker's immediate answer: either outcome is fine, none may leave a call open."""
    caller = new_caller()
    lines = await sipp("cancel.xml", ready.front, "-key", "caller", caller, calls=6, tmp=tmp_path)
    counts = outcomes(lines)
    assert counts.get("answered", 0) + counts.get("cancelled", 0) == 6, counts
    assert counts.get("ended", 0) == counts.get("answered", 0)
    answered = counts.get("answered", 0)
    await watcher.calls_ended(caller, answered)
    await asyncio.sleep(1.0)

    def all_ended() -> bool:  # calls a CANCEL cut after the worker had answered end too
        started = {e.envelope.call_id for e in watcher.of(caller, Kind.RINGING)}
        return started <= {e.envelope.call_id for e in watcher.of(caller, Kind.ENDED)}

    await watcher.until(all_ended, 40, "an ENDED for every call that rang")


async def test_more_calls_than_slots_get_busy_and_none_is_lost(
    ready: Node, watcher: Watcher, tmp_path: Path
) -> None:
    """More calls at once than 2 workers have slots: the front tries every worker, then relays 486."""
    caller = new_caller()
    calls = 2 * SLOTS + 6
    lines = await sipp(
        "busy.xml", ready.front, "-key", "caller", caller, "-d", "3000", calls=calls, rate=200, tmp=tmp_path
    )
    counts = outcomes(lines)
    answered = counts.get("answered", 0)
    refused = counts.get("busy 486", 0) + counts.get("busy 503", 0)
    assert answered + refused == calls, counts
    assert answered >= 2 * SLOTS and refused >= 1, counts
    assert counts.get("ended", 0) == answered
    node_answered, ended = await watcher.calls_ended(caller, answered)
    assert len(node_answered) == answered  # a refused call never started on a worker
    assert all(e.payload.hangup_by == "customer" for e in ended)


async def test_pool_grows_under_load_and_retires_idle_workers(
    ready: Node, watcher: Watcher, tmp_path: Path
) -> None:
    """Calls that leave 1 free slot (< 2): a third worker starts and joins the front; idle, it is retired."""
    await ready.front_size(2, IDLE_RETIRE_S + 15)  # a worker an earlier test added has gone
    await watcher.until(lambda: len(ready.workers()) == 2, 10, "two workers")
    since = ready.mark()
    caller = new_caller()
    n = 2 * SLOTS - 1
    calls = asyncio.create_task(
        sipp("busy.xml", ready.front, "-key", "caller", caller, "-d", "8000", calls=n, rate=20, tmp=tmp_path)
    )
    await ready.front_size(3, 30)
    spawned = ready.records("media worker spawned", since)
    assert spawned and spawned[0]["free_slots"] < 2
    assert outcomes(await calls) == {"answered": n, "ended": n}
    await watcher.calls_ended(caller, n)
    # idle beyond the minimum: out of the front first, then the process exits 0, calls none lost
    await ready.front_size(2, IDLE_RETIRE_S + 15)
    await watcher.until(lambda: bool(ready.records("media worker retired", since)), 10, "retirement")
    assert not ready.records("media worker exited", since)
    assert _metric(ready.metrics(), "voicebot_telephony_calls_lost_total") == 0


async def test_a_hung_worker_gets_no_calls(ready: Node, watcher: Watcher, tmp_path: Path) -> None:
    """A stopped (not dead) worker: the pool still lists it, Kamailio's pings take it out of rotation."""
    workers = ready.workers()
    index = min(workers)
    pid = workers[index]["pid"]
    media_node = next(r["media_node"] for r in ready.records("media worker ready") if r["index"] == index)
    caller = new_caller()
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(3.5)  # a ping every second, 2 s to time out
        lines = await sipp(
            "busy.xml", ready.front, "-key", "caller", caller, "-d", "500", calls=3, rate=5, tmp=tmp_path
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    assert outcomes(lines) == {"answered": 3, "ended": 3}
    answered, _ = await watcher.calls_ended(caller, 3)
    assert media_node not in {e.envelope.media_node for e in answered}


def _fuzzed(host: str, port: int, rnd: random.Random, n: int) -> bytes:
    """A mutated in-dialog INVITE (its To tag matches no dialog, so what parses is refused with 481 and
    no call is left half-open): flipped bytes, truncation, lost or repeated lines, a 60 kB header,
    odd line ends, numbers out of range, or plain noise."""
    sdp = (
        "v=0\r\no=fuzz 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    msg = (
        f"INVITE sip:1000@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKfz{n}x{rnd.randrange(10**9)}\r\n"
        'From: "fuzz" <sip:fuzz@127.0.0.1:9>;tag=f1\r\n'
        f"To: <sip:1000@{host}:{port}>;tag=nodialog\r\nCall-ID: fuzz-{n}-{rnd.randrange(10**12)}\r\n"
        f"CSeq: {n + 1} INVITE\r\nContact: <sip:fuzz@127.0.0.1:9>\r\nMax-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()
    kind = rnd.randrange(9)
    if kind == 0:
        b = bytearray(msg)
        for _ in range(rnd.randint(1, 20)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        return bytes(b)
    if kind == 1:
        return msg[: rnd.randrange(1, len(msg))]
    if kind == 7:
        return bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 1400)))
    if kind == 8:
        text = msg.decode()
        for word in ("70", "40000", " 8 ", "Content-Length: "):
            text = text.replace(word, rnd.choice(["-1", "99999999999999999999", "4294967296", "", "%n%s"]), 1)
        return text.encode()
    lines = msg.split(b"\r\n")
    if kind == 2:
        for _ in range(rnd.randint(1, 4)):
            lines.pop(rnd.randrange(len(lines)))
    elif kind == 3:
        for _ in range(rnd.randint(1, 30)):
            lines.insert(rnd.randrange(len(lines)), rnd.choice(lines))
    elif kind == 4:
        lines.insert(1, b"X-Huge: " + b"A" * rnd.randint(1000, 60000))
    elif kind == 5:
        lines.insert(rnd.randrange(len(lines)), bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 200))))
    else:
        return rnd.choice([b"\n", b"\r", b"\r\r\n"]).join(lines)
    return b"\r\n".join(lines)


async def test_malformed_and_fuzzed_sip_never_crash_a_worker(
    ready: Node, watcher: Watcher, tmp_path: Path
) -> None:
    """The scenario's malformed INVITEs through the front and straight at a worker, then 600 fuzzed ones
    spread over the front and every worker: no worker dies or restarts, and calls still get through.

    (pjsip tolerates a few of the scenario's cases and answers them; sipp never ACKs, so those calls
    stay half-open until pjsip gives up, ~32 s: they hold slots, and the pool may add a worker.)
    """
    since = ready.mark()
    before = ready.workers()
    front_host, front_port = ready.front.rsplit(":", 1)
    first = before[min(before)]
    for target in (ready.front, f"127.0.0.1:{first['sip_port']}"):
        await sipp("malformed_invites.xml", target, calls=1, tmp=tmp_path)
    targets = [(front_host, int(front_port))] + [("127.0.0.1", w["sip_port"]) for w in before.values()]
    rnd = random.Random(20240618)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(600):
            host, port = targets[n % len(targets)]
            sock.sendto(_fuzzed(host, port, rnd, n)[:65000], (host, port))
            if n % 50 == 0:
                await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)
    # every worker still runs, none was restarted, the front still answers
    assert not ready.records("media worker exited", since)
    assert not ready.records("sip front exited; starting it again", since)
    for w in before.values():
        assert _alive(w["pid"])

    def free_slots() -> bool:
        text = ready.metrics()
        workers = _metric(text, "voicebot_telephony_workers", '{state="ready"}')
        return workers * SLOTS - _metric(text, "voicebot_telephony_busy_slots") >= 2

    await watcher.until(free_slots, 20, "free slots")
    caller = new_caller()
    lines = await sipp(
        "busy.xml", ready.front, "-key", "caller", caller, "-d", "500", calls=2, rate=5, tmp=tmp_path
    )
    assert outcomes(lines).get("answered", 0) == 2, outcomes(lines)
    await watcher.calls_ended(caller, 2)
