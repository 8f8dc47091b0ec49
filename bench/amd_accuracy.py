"""Answering-machine detection accuracy and time to verdict on the rendered greeting corpus.

Greetings (tests/data/amd_greetings.yaml) go through the worker's media path: 20 ms frames, real Silero
VAD in 512-sample chunks, AmdDetector + BeepDetector; the first end-pointed utterance through faster-whisper
tiny.en for the transcript cue. Prints confusion tables (first verdict / after a late beep / + transcript),
accuracy per class, time to verdict p50/p95/p99, and the detector's cost per chunk, with the machine noted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import machine, percentile, table

from services.telephony.amd import AmdConfig, AmdDetector, Answer, BeepDetector
from services.telephony.amd_eval import Report, evaluate, load_greetings, render
from voicebot.config import REPO_ROOT

CORPUS = REPO_ROOT / "tests" / "data" / "amd_greetings.yaml"
ANSWERS = [Answer.HUMAN, Answer.MACHINE, Answer.UNCERTAIN]


def confusion(report: Report, mode: str) -> str:
    c = report.confusion(mode)
    lines = [
        "| true \\ verdict | HUMAN | MACHINE | UNCERTAIN | accuracy (decided) |",
        "|---|---|---|---|---|",
    ]
    for label in (Answer.HUMAN, Answer.MACHINE):
        counts = " | ".join(str(c[(label, a)]) for a in ANSWERS)
        lines.append(f"| {label.name} | {counts} | {report.accuracy(mode, label):.1%} |")
    decided = len(report.decided(mode))
    lines.append(f"| all | | | | {report.accuracy(mode):.1%} of {decided}/{len(report.outcomes)} decided |")
    return "\n".join(lines)


def timings(report: Report) -> str:
    rows = [
        ("person: first HUMAN after last word", report.seconds_after_words()),
        ("person: first HUMAN since answer", report.seconds_to_verdict("first", Answer.HUMAN, Answer.HUMAN)),
        (
            "machine: MACHINE since answer",
            report.seconds_to_verdict("acoustic", Answer.MACHINE, Answer.MACHINE),
        ),
    ]
    if report.with_transcript:
        mode = "acoustic + transcript"
        rows += [
            (
                "person: HUMAN since answer (+words)",
                report.seconds_to_verdict(mode, Answer.HUMAN, Answer.HUMAN),
            ),
            (
                "machine: MACHINE since answer (+words)",
                report.seconds_to_verdict(mode, Answer.MACHINE, Answer.MACHINE),
            ),
            (
                "machine: long greeting held for the words",
                [
                    max(o.acoustic.decided_at_us, o.transcript_at_us) / 1e6
                    for o in report.outcomes
                    if o.greeting.label is Answer.MACHINE
                    and o.acoustic.reason == "long greeting"
                    and o.transcript_at_us is not None
                ],
            ),
            (
                "first transcript ready since answer",
                [o.transcript_at_us / 1e6 for o in report.outcomes if o.transcript_at_us],
            ),
            ("ASR of the first utterance", [o.asr_s for o in report.outcomes if o.transcript is not None]),
        ]
    return table(rows)


def chunk_cost(report: Report) -> str:
    """Microseconds per 32 ms chunk for AmdDetector.push and BeepDetector.push (pure Python + numpy)."""
    amd_us, beep_us = [], []
    for o in report.outcomes:
        pcm = render(o.greeting)
        amd, beep = AmdDetector(answered_us=0), BeepDetector()
        for i in range(0, len(pcm) - 1023, 1024):
            chunk, end_us = pcm[i : i + 1024], (i + 1024) // 2 * 1_000_000 // 16000
            t = time.perf_counter()
            amd.push(chunk, False, end_us)
            t1 = time.perf_counter()
            beep.push(chunk, end_us)
            t2 = time.perf_counter()
            if not amd.done:
                amd_us.append((t1 - t) * 1e6)
            beep_us.append((t2 - t1) * 1e6)
    return (
        f"per 32 ms chunk: AmdDetector.push p50 {percentile(amd_us, 50):.0f} µs, "
        f"p99 {percentile(amd_us, 99):.0f} µs; BeepDetector.push p50 {percentile(beep_us, 50):.0f} µs, "
        f"p99 {percentile(beep_us, 99):.0f} µs"
    )


def sweep(greetings: list) -> str:
    """How much the two main thresholds matter (acoustic only, after a late beep's revision)."""
    lines = [
        "| after-greeting silence ms | long greeting ms | person→MACHINE | machine→HUMAN | UNCERTAIN "
        "| accuracy | person p50 s |",
        "|---|---|---|---|---|---|---|",
    ]
    for silence in (480, 640, 800):
        for long in (1500, 2000, 2500, 3000):
            r = evaluate(greetings, AmdConfig(after_greeting_silence_ms=silence, long_greeting_ms=long))
            c = r.confusion("acoustic")
            unsure = c[(Answer.HUMAN, Answer.UNCERTAIN)] + c[(Answer.MACHINE, Answer.UNCERTAIN)]
            p50 = statistics.median(
                r.seconds_to_verdict("first", Answer.HUMAN, Answer.HUMAN) or [float("nan")]
            )
            wrong = f"{c[(Answer.HUMAN, Answer.MACHINE)]} | {c[(Answer.MACHINE, Answer.HUMAN)]}"
            lines.append(
                f"| {silence} | {long} | {wrong} | {unsure} | {r.accuracy('acoustic'):.1%} | {p50:.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--no-transcript", action="store_true", help="acoustic cues only (no faster-whisper)")
    parser.add_argument("--asr-threads", type=int, default=2)
    parser.add_argument("--sweep", action="store_true", help="also vary the two main thresholds")
    parser.add_argument("--detail", action="store_true", help="one line per greeting")
    args = parser.parse_args()

    greetings = load_greetings(args.corpus)
    transcribe = None
    if not args.no_transcript:
        from services.asr.recognizer import WhisperRecognizer

        recognizer = WhisperRecognizer(threads=args.asr_threads)
        recognizer.warm_up()
        transcribe = lambda pcm, rate: recognizer.transcribe(pcm, rate).text  # noqa: E731
    started = time.perf_counter()
    report = evaluate(greetings, AmdConfig(), transcribe)
    wall = time.perf_counter() - started

    humans = sum(g.label is Answer.HUMAN for g in greetings)
    print(f"answering-machine detection — {machine()}")
    print(
        f"{len(greetings)} greetings ({humans} people, {len(greetings) - humans} machines, "
        f"{len({g.voice for g in greetings})} voices, {sum(bool(g.hard) for g in greetings)} marked hard) "
        f"from {args.corpus.name}; Silero VAD + AmdDetector defaults"
        + ("; first utterance through faster-whisper tiny.en (int8, CPU)" if transcribe else "")
        + f"; {wall:.0f} s\n"
    )
    titles = {
        "first": "first verdict (what the worker publishes first)",
        "acoustic": "acoustic, after a late beep's revision",
        "acoustic + transcript": "acoustic + first transcript (combine)",
    }
    for mode in report.modes:
        wrong = report.errors(mode)
        print(f"## {titles[mode]}\n\n{confusion(report, mode)}\n")
        if wrong:
            print("wrong: " + ", ".join(f"{o.greeting.id} ({o.verdict(mode).reason})" for o in wrong) + "\n")
    print("## time to verdict\n\n" + timings(report) + "\n")
    print(chunk_cost(report))
    if args.detail:
        for mode in report.modes:
            print(f"\n## {titles[mode]}, per greeting\n\n" + "\n".join(report.rows(mode)))
    if args.sweep:
        print("\n## threshold sensitivity (acoustic)\n\n" + sweep(greetings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
