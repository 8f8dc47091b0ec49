"""Telephony load: concurrent calls one node carries with media and VAD, on this machine.

One node as in production (`python -m services.telephony`: supervisor, elastic media workers, Kamailio
front) on its own tansu broker. sipp plays the customers through the front: every call sends the G.711
A-law recording shipped with sipp (real RTP, ~7 s, over and over), each worker end-points it with Silero
VAD and publishes the utterances. sipp ramps to --calls concurrent calls at --rate calls/s, they talk for
--plateau-s more seconds all together, then hang up one by one.

Measured: calls answered / failed / dropped (a call is dropped when it does not end with the caller's
own BYE), call set-up time (INVITE → 200 OK, at sipp) and rate, frame lateness (the media clock's gap
between two frames of a call beyond its on-time gap — 40 ms for the workers' 32 ms frames, which the
bridge completes on 20 ms ticks — both directions, and the wait of a received frame before its VAD),
CPU and memory of the node per call (from /proc: psutil is not a dependency), utterances per call.

    .venv/bin/python bench/telephony_load.py                     # 100 calls, elastic pool
    .venv/bin/python bench/telephony_load.py --prewarm           # all workers started before the calls
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from common import machine, percentile

from services.telephony.app import Settings as TelephonySettings
from voicebot import topics
from voicebot.broker import create_topics, free_port, start_tansu, stop_process
from voicebot.bus import Bus, Event
from voicebot.config import REPO_ROOT, Settings
from voicebot.events import AudioUtterance, CallLifecycle
from voicebot.kamailio import free_udp_port
from voicebot.sip import FrameTiming

SCENARIO = REPO_ROOT / "tests" / "sipp" / "call_with_audio.xml"
PLAY_S = 7.1  # one play of the recording (the scenario's pause)
TICK = os.sysconf("SC_CLK_TCK")
MEMORY_EVERY = 5  # samples (seconds) between two reads of every process's memory
DECODER = json.JSONDecoder()
Kind = CallLifecycle.Kind


# ---- /proc --------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        kids: list[int] = []
        for task in tasks:
            text = (task / "children").read_text().split()
            kids += [int(k) for k in text]
        return kids
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError):
        return 0


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB: PSS shares the libraries the workers map alike, RSS counts them in each."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Sample:
    at: float
    live: int  # calls answered and not ended
    node_cpu: float  # % of one core since the last sample
    worker_cpu: float  # the media workers' part of it
    front_cpu: float  # Kamailio's part
    sipp_cpu: float
    broker_cpu: float
    machine_busy: float  # % of all cores busy, whatever runs (other jobs included)
    rss_kib: int
    pss_kib: int
    workers: int
    worker_pss_kib: list[int]


# ---- the run ------------------------------------------------------------------------------------


@dataclass
class Watch:
    """Lifecycle events and utterances of the bench's calls (its caller number)."""

    caller: str
    answered: dict[str, float] = field(default_factory=dict)  # call_id → monotonic time seen
    ended: dict[str, CallLifecycle] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)
    utterances: dict[str, int] = field(default_factory=dict)

    def on(self, event: Event) -> None:
        payload = event.payload
        call_id = event.envelope.call_id
        if isinstance(payload, AudioUtterance):
            if call_id in self.answered and payload.last_part:
                self.utterances[call_id] = self.utterances.get(call_id, 0) + 1
            return
        if payload.contact.phone_e164 != self.caller:
            return
        if payload.kind == Kind.ANSWERED:
            self.answered[call_id] = time.monotonic()
            self.nodes[call_id] = event.envelope.media_node
        elif payload.kind == Kind.ENDED:
            self.ended[call_id] = payload

    @property
    def live(self) -> int:
        return len(set(self.answered) - set(self.ended))


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def lateness(text: str) -> dict[str, list[float]]:
    """kind → cumulative bucket counts (BUCKETS_MS, then +Inf) of the node's frame lateness histogram."""
    out: dict[str, list[float]] = {}
    for kind in FrameTiming.KINDS:
        counts = []
        for le in (*FrameTiming.BUCKETS_MS, math.inf):
            label = "+Inf" if le == math.inf else str(le / 1000)
            series = f'voicebot_telephony_frame_lateness_seconds_bucket{{kind="{kind}",le="{label}"}}'
            m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
            counts.append(float(m.group(1)) if m else 0.0)
        out[kind] = counts
    return out


def late_max_ms(text: str, kind: str) -> float:
    m = re.search(rf'^voicebot_telephony_frame_lateness_max_seconds\{{kind="{kind}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) * 1000 if m else float("nan")


def summarize(before: list[float], after: list[float]) -> tuple[int, float, int]:
    """(frames, p99 upper bound in ms, frames late by more than 40 ms) between two scrapes."""
    cum = [a - b for a, b in zip(after, before, strict=True)]
    total = int(cum[-1])
    if not total:
        return 0, float("nan"), 0
    bounds = (*FrameTiming.BUCKETS_MS, math.inf)
    p99 = next(b for b, c in zip(bounds, cum, strict=True) if c >= 0.99 * total)
    over_40 = total - int(cum[FrameTiming.BUCKETS_MS.index(40.0)])
    return total, p99, over_40


async def wait_log(log: Path, check, timeout: float, what: str) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        records = []
        for raw in log.read_text(errors="replace").splitlines():
            if raw.startswith("{"):  # (another process may have written on the same line after it)
                with contextlib.suppress(ValueError):
                    records.append(DECODER.raw_decode(raw)[0])
        if check(records):
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(f"node: no {what} after {timeout} s (log: {log})")
        await asyncio.sleep(0.25)


async def run(args: argparse.Namespace) -> int:
    calls, rate = args.calls, args.rate
    slots = TelephonySettings().telephony_calls_per_worker
    max_workers = args.max_workers or math.ceil(calls / slots) + 2
    min_workers = max_workers if args.prewarm else args.min_workers
    # a worker takes ~5 s to start on a busy machine: keep that many seconds of arrivals free
    args.spawn_free_slots = args.spawn_free_slots or max(slots, math.ceil(args.rate * 6))
    ramp_s = calls / rate
    plays = max(1, math.ceil((ramp_s + args.plateau_s) / PLAY_S))
    work = Path(tempfile.mkdtemp(prefix="bench-telephony-"))
    broker_port = free_port()
    tansu = start_tansu(broker_port)
    bootstrap = f"127.0.0.1:{broker_port}"
    node: subprocess.Popen[bytes] | None = None
    watcher: Bus | None = None
    try:
        await create_topics(bootstrap)
        env = {
            **os.environ,
            "VOICEBOT_KAFKA_BOOTSTRAP": bootstrap,
            "VOICEBOT_TELEPHONY_SIP_PORT": "0",
            "VOICEBOT_TELEPHONY_WORKERS": str(max_workers),
            "VOICEBOT_TELEPHONY_WORKERS_MIN": str(min_workers),
            "VOICEBOT_TELEPHONY_SPAWN_FREE_SLOTS": str(args.spawn_free_slots),
            "VOICEBOT_TELEPHONY_IDLE_RETIRE_S": "600",
            "VOICEBOT_TELEPHONY_KAMAILIO": "1",
            "VOICEBOT_TELEPHONY_KAMAILIO_PORT": "0",
            "VOICEBOT_TELEPHONY_INBOUND_CAMPAIGN": "acme-card",
            **({"VOICEBOT_FETCH_MAX_WAIT_MS": str(args.fetch_wait_ms)} if args.fetch_wait_ms else {}),
            "VOICEBOT_NODE_ID": f"bench-{uuid.uuid4().hex[:6]}",
            "VOICEBOT_HTTP_PORT": "0",
        }
        log = work / "node.log"
        with log.open("wb") as out:
            node = subprocess.Popen(
                [sys.executable, "-m", "services.telephony"], cwd=REPO_ROOT, env=env, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
        t_boot = time.monotonic()
        records = await wait_log(
            log,
            lambda rs: (
                sum(r.get("event") == "media worker ready" for r in rs) >= min_workers
                and any(r.get("event") == "service ready" and "worker" not in r for r in rs)
            ),
            60 + 5 * min_workers,
            f"{min_workers} ready workers",
        )
        boot_s = time.monotonic() - t_boot
        http_port = next(
            r["http_port"] for r in records if r.get("event") == "service ready" and "worker" not in r
        )
        front = next(r["address"] for r in records if r.get("event") == "sip front ready")

        watch = Watch(caller=f"+1555{uuid.uuid4().int % 10**7:07d}")
        watcher = Bus("bench-telephony", Settings(kafka_bootstrap=bootstrap))
        group = f"bench-{uuid.uuid4().hex}"

        # off the call path: the watcher only counts, and its polling would take CPU from the node
        @watcher.on(topics.LIFECYCLE, CallLifecycle, group=group + "-l", realtime=False)
        @watcher.on(topics.UTTERANCES, AudioUtterance, group=group + "-u", realtime=False)
        async def _seen(event: Event) -> None:
            watch.on(event)

        await watcher.start()
        await asyncio.sleep(5)  # consumer groups settle
        idle = scrape(http_port)
        idle_mem = [memory_kib(p) for p in tree(node.pid)]
        pids = tree(node.pid)
        ticks0, at0 = sum(cpu_ticks(p) for p in pids), time.monotonic()
        await asyncio.sleep(args.idle_s)
        idle_cpu = 100 * (sum(cpu_ticks(p) for p in pids) - ticks0) / TICK / (time.monotonic() - at0)
        idle_workers = sum("services.telephony.worker" in cmdline(p) for p in pids)

        sipp_cmd = [
            "sipp", "-sf", str(SCENARIO), "-key", "caller", watch.caller, "-set", "plays", str(plays),
            "-m", str(calls), "-l", str(calls), "-r", str(rate), "-i", "127.0.0.1", "-mi", "127.0.0.1",
            "-p", str(free_udp_port()), "-mp", str(free_udp_port()), "-nostdin",
            "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-stf", str(work / "stat.csv"), "-fd", "1",
            "-trace_err", "-error_file", str(work / "sipp.err"),
            "-trace_logs", "-log_file", str(work / "sipp.log"),
            "-timeout", f"{int(ramp_s + plays * PLAY_S + 60)}s", front,
        ]  # fmt: skip
        sipp = subprocess.Popen(sipp_cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        samples: list[Sample] = []
        marks: dict[str, tuple[float, str]] = {}
        last_ticks: dict[int, int] = {}
        last_t = time.monotonic()
        last_machine = machine_ticks()
        mem: dict[int, tuple[int, int]] = {}
        while sipp.poll() is None:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            pids = tree(node.pid)
            ticks = {p: cpu_ticks(p) for p in [*pids, sipp.pid, tansu.pid]}
            used = {p: t - last_ticks.get(p, t) for p, t in ticks.items()}
            last_ticks = ticks
            dt = now - last_t
            last_t = now
            if len(samples) % MEMORY_EVERY == 0:  # smaps of dozens of processes costs the kernel CPU
                mem = {p: memory_kib(p) for p in pids}
            workers = [p for p in pids if "services.telephony.worker" in cmdline(p)]
            node_ticks = sum(used[p] for p in pids)
            busy, total = machine_ticks()
            machine = 100 * (busy - last_machine[0]) / max(total - last_machine[1], 1)
            last_machine = (busy, total)
            samples.append(
                Sample(
                    at=now - t0,
                    live=watch.live,
                    node_cpu=100 * node_ticks / TICK / dt,
                    worker_cpu=100 * sum(used[p] for p in workers) / TICK / dt,
                    front_cpu=100
                    * sum(used[p] for p in pids if cmdline(p).startswith("/usr/sbin/kamailio"))
                    / TICK
                    / dt,
                    sipp_cpu=100 * used.get(sipp.pid, 0) / TICK / dt,
                    broker_cpu=100 * used.get(tansu.pid, 0) / TICK / dt,
                    machine_busy=machine,
                    rss_kib=sum(mem[p][0] for p in pids if p in mem),
                    pss_kib=sum(mem[p][1] for p in pids if p in mem),
                    workers=len(workers),
                    worker_pss_kib=[mem[p][1] for p in workers if p in mem],
                )
            )
            if "full" not in marks and watch.live >= calls:
                marks["full"] = (now, scrape(http_port))
            if "full" in marks and "first_end" not in marks and watch.ended:
                marks["first_end"] = (now, scrape(http_port))
            if not args.quiet:
                s = samples[-1]
                print(
                    f"t={s.at:5.0f}s live={s.live:3d} workers={s.workers:2d} node_cpu={s.node_cpu:5.0f}% "
                    f"sipp_cpu={s.sipp_cpu:4.0f}% machine={s.machine_busy:3.0f}% "
                    f"pss={s.pss_kib / 1024:6.0f}MiB",
                    file=sys.stderr,
                )
        sipp_code = sipp.returncode
        await asyncio.sleep(3)  # the last ENDED events
        final = scrape(http_port)
    finally:
        if watcher is not None:
            await watcher.stop()
        if node is not None and node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        stop_process(tansu)

    return report(
        Run(
            args=args, work=work, watch=watch, samples=samples, marks=marks, idle=idle, final=final,
            idle_pss_kib=sum(m[1] for m in idle_mem), idle_cpu=idle_cpu, idle_workers=idle_workers,
            boot_s=boot_s, plays=plays, sipp_code=sipp_code, min_workers=min_workers, max_workers=max_workers,
        )
    )  # fmt: skip


@dataclass
class Run:
    args: argparse.Namespace
    work: Path
    watch: Watch
    samples: list[Sample]
    marks: dict[str, tuple[float, str]]
    idle: str  # /metrics before the first call
    final: str  # /metrics after the last
    idle_pss_kib: int
    idle_cpu: float  # % of a core with the workers up and no call
    idle_workers: int
    boot_s: float
    plays: int
    sipp_code: int | None
    min_workers: int
    max_workers: int


def _stat_last(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines() if path.exists() else []
    if len(lines) < 2:
        return {}
    head, last = lines[0].split(";"), lines[-1].split(";")
    return dict(zip(head, last, strict=False))


def _setup_times(work: Path) -> list[float]:
    """INVITE → 200 OK of every call, from sipp's rtt file (ms resolution), in seconds."""
    out = []
    for f in work.glob("*_rtt.csv"):
        for line in f.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                out.append(float(parts[1]) / 1000)
    return out


def report(r: Run) -> int:
    args, watch, samples = r.args, r.watch, r.samples
    calls = args.calls
    stat = _stat_last(r.work / "stat.csv")
    setup = _setup_times(r.work)
    by_customer = [e for e in watch.ended.values() if e.hangup_by == "customer" and e.answered]
    dropped = len(watch.answered) - len(by_customer)
    failed = int(stat.get("FailedCall(C)", "0") or 0)
    sipp_log = (r.work / "sipp.log").read_text().splitlines() if (r.work / "sipp.log").exists() else []
    refused = sum(line.startswith("busy") for line in sipp_log)
    answered_at = sorted(watch.answered.values())
    span = answered_at[-1] - answered_at[0] if len(answered_at) > 1 else 0.0
    setup_rate = (len(answered_at) - 1) / span if span else 0.0
    peak = max((s.live for s in samples), default=0)
    plateau = [s for s in samples if s.live >= calls] or [s for s in samples if s.live >= 0.9 * peak]
    cpu = statistics.fmean(s.node_cpu for s in plateau) if plateau else float("nan")

    def mean(attr: str) -> float:
        return statistics.fmean(getattr(s, attr) for s in plateau) if plateau else float("nan")

    sipp_cpu, worker_cpu, front_cpu = mean("sipp_cpu"), mean("worker_cpu"), mean("front_cpu")
    broker_cpu, machine_busy = mean("broker_cpu"), mean("machine_busy")
    supervisor_cpu = cpu - worker_cpu - front_cpu
    top = max(samples, key=lambda s: s.pss_kib) if samples else None
    pss = top.pss_kib / 1024 if top else 0.0
    rss = max((s.rss_kib for s in samples), default=0) / 1024
    worker_pss = statistics.fmean(top.worker_pss_kib) / 1024 if top and top.worker_pss_kib else float("nan")
    utts = [watch.utterances.get(c, 0) for c in watch.answered]
    utt_mean = statistics.fmean(utts) if utts else 0.0

    fetch = f"inbox fetch wait {args.fetch_wait_ms} ms" if args.fetch_wait_ms else "default fetch wait"
    pool = (
        "all started first"
        if args.prewarm
        else f"elastic from {r.min_workers}, a new one below {args.spawn_free_slots} free slots"
    )
    print(f"\ntelephony load — {machine()}")
    print(
        f"one node: Kamailio front + at most {r.max_workers} media workers ({pool}), VAD on, {fetch}; "
        f"sipp: {calls} calls at {args.rate}/s, each {r.plays} × 7 s of G.711 audio; "
        f"node booted in {r.boot_s:.1f} s\n"
    )
    rows = [
        ("offered / answered by the node", f"{calls} / {len(watch.answered)}"),
        ("peak concurrent calls (answered, not ended)", f"{peak}"),
        ("refused (486/503: no free slot) / failed at sipp", f"{refused} / {failed}"),
        ("dropped (answered, not ended by the caller's BYE)", f"{dropped}"),
        ("workers that took calls", f"{len(set(watch.nodes.values()))}"),
        ("utterances per call (min / mean)", f"{min(utts, default=0)} / {utt_mean:.1f}"),
        (f"set-up rate achieved (answers/s, offered {args.rate}/s)", f"{setup_rate:.2f}"),
    ]
    if setup:
        p = [percentile(setup, q) * 1000 for q in (50, 95, 99)]
        rows.append(
            (
                "set-up time INVITE→200 p50 / p95 / p99 / max ms",
                f"{p[0]:.0f} / {p[1]:.0f} / {p[2]:.0f} / {max(setup) * 1000:.0f}",
            )
        )
    rows += [
        (
            f"node CPU idle ({r.idle_workers} workers, no call)",
            f"{r.idle_cpu:.0f} % of a core, {r.idle_cpu / max(r.idle_workers, 1):.1f} % per worker",
        ),
        (
            "node CPU while all calls are up (supervisor + workers + Kamailio)",
            f"{cpu:.0f} % of a core, {cpu / max(peak, 1):.2f} % per call",
        ),
        (
            "… of which workers / supervisor / Kamailio",
            f"{worker_cpu:.0f} % / {supervisor_cpu:.0f} % / {front_cpu:.0f} %",
        ),
        (
            "meanwhile: sipp (the callers) / tansu (the broker)",
            f"{sipp_cpu:.0f} % / {broker_cpu:.0f} % of a core",
        ),
        (f"machine busy meanwhile (all {os.cpu_count()} cores, any process)", f"{machine_busy:.0f} %"),
        ("node memory at peak: PSS / RSS", f"{pss:.0f} MiB / {rss:.0f} MiB"),
        ("PSS per call (peak PSS / peak calls)", f"{pss / max(peak, 1):.1f} MiB"),
        (
            "PSS per worker process at peak; node PSS before the calls",
            f"{worker_pss:.0f} MiB; {r.idle_pss_kib / 1024:.0f} MiB",
        ),
        ("sipp exit code", f"{r.sipp_code}"),
    ]
    print("| measure | value |\n|---|---|")
    print("\n".join(f"| {k} | {v} |" for k, v in rows))

    windows = [("whole run", lateness(r.idle), lateness(r.final))]
    if "full" in r.marks and "first_end" in r.marks:
        windows.append(("all calls up", lateness(r.marks["full"][1]), lateness(r.marks["first_end"][1])))
    print(
        "\n| frame lateness (beyond the on-time gap) | window | frames | p99 ms | late > 40 ms |"
        "\n|---|---|---|---|---|"
    )
    what = {"rx": "clock gap, received", "tx": "clock gap, sent", "lag": "loop wait before VAD"}
    for name, a, b in windows:
        for kind in FrameTiming.KINDS:
            frames, p99, over = summarize(a[kind], b[kind])
            print(f"| {what[kind]} | {name} | {frames} | ≤ {p99:g} | {over} |")
    maxima = " / ".join(f"{late_max_ms(r.final, k):.1f}" for k in FrameTiming.KINDS)
    print(f"| max, rx / tx / lag ms | whole run | | {maxima} | |")
    ok = failed == 0 and dropped == 0 and len(watch.answered) == calls
    verdict = "every call answered, none failed or dropped" if ok else "CALLS REFUSED, FAILED OR DROPPED"
    print(f"\nresult: {verdict}; files in {r.work}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls to reach")
    parser.add_argument("--rate", type=float, default=4.0, help="new calls per second while ramping")
    parser.add_argument("--plateau-s", type=float, default=20.0, help="time all calls talk together")
    parser.add_argument("--prewarm", action="store_true", help="start every worker before the first call")
    parser.add_argument("--min-workers", type=int, default=2)
    parser.add_argument("--max-workers", type=int, default=0, help="default: calls / slots per worker + 2")
    parser.add_argument(
        "--spawn-free-slots",
        type=int,
        default=0,
        help="start a worker below this many free slots (0: rate × 6 s)",
    )
    parser.add_argument(
        "--idle-s", type=float, default=5.0, help="CPU sampled with no call, before the calls"
    )
    parser.add_argument(
        "--fetch-wait-ms", type=int, default=0, help="the node's VOICEBOT_FETCH_MAX_WAIT_MS (0: the default)"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
