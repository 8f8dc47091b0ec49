"""End of turn: false cut-ins and dead air of the semantic gate against fixed VAD silences.

Every utterance of tests/data/turn_utterances.yaml (one customer turn each, most with pauses inside)
is rendered with real voices, end-pointed by Silero VAD + the telephony Endpointer, transcribed by
faster-whisper tiny.en (timed) and decided by the dialogue TurnGate (services/dialogue/turns_eval.py).
Dead air: true end of speech → turn-end decision, with this machine's ASR time and with an instant ASR.
"""

from __future__ import annotations

import argparse
import time

from common import machine, percentile

from services.asr.recognizer import WhisperRecognizer
from services.dialogue.turns import TurnConfig
from services.dialogue.turns_eval import Evaluation, Outcome, Policy, default_policies, load, render


def row(name: str, outcomes: list[Outcome]) -> str:
    air = [o.dead_air_s for o in outcomes if o.dead_air_s is not None]
    cut = sum(1 for o in outcomes if o.false_cut_ins)
    extra = sum(o.false_cut_ins for o in outcomes)
    p = [percentile(air, q) * 1000 for q in (50, 95, 99)]
    return f"| {name} | {len(outcomes)} | {cut} | {extra} | {p[0]:.0f} | {p[1]:.0f} | {p[2]:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--silence-ms", type=int, default=300, help="telephony VAD silence under the gate")
    parser.add_argument("--hold-unsure-ms", type=int, default=TurnConfig().hold_unsure_ms)
    parser.add_argument("--hold-incomplete-ms", type=int, default=TurnConfig().hold_incomplete_ms)
    parser.add_argument("--threads", type=int, default=2, help="ASR CPU threads")
    parser.add_argument("--verbose", action="store_true", help="every false cut-in, with what was heard")
    args = parser.parse_args()

    recognizer = WhisperRecognizer(threads=args.threads)
    recognizer.warm_up()

    def transcribe(pcm: bytes) -> tuple[str, float]:
        result = recognizer.transcribe(pcm, 16000)
        return result.text, result.processing_s

    gate = TurnConfig(hold_unsure_ms=args.hold_unsure_ms, hold_incomplete_ms=args.hold_incomplete_ms)
    policies = default_policies(gate, args.silence_ms)
    policies.append(
        Policy(
            f"semantic gate, no SPEECH_STARTED ({args.silence_ms} ms VAD)",
            args.silence_ms,
            gate,
            use_onsets=False,
        )
    )
    spoken = load()
    started = time.perf_counter()
    evaluation = Evaluation(transcribe)
    results = evaluation.run((render(s, seed=i) for i, s in enumerate(spoken)), policies)
    wall = time.perf_counter() - started

    with_pauses = sum(1 for s in spoken if s.pauses)
    print(f"# End of turn — {len(spoken)} turns ({with_pauses} with pauses inside), {machine()}")
    print(
        f"gate: VAD silence {args.silence_ms} ms, hold unsure {gate.hold_unsure_ms} ms, "
        f"incomplete {gate.hold_incomplete_ms} ms, resume wait {gate.resume_wait_ms} ms, "
        f"max parts {gate.max_parts}; one bus hop = 10 ms\n"
    )
    for asr in (True, False):
        what = "measured ASR time (faster-whisper tiny.en int8)" if asr else "instant ASR (policy cost alone)"
        print(f"## Dead air with {what}\n")
        print("| policy | turns | turns cut in | extra turns | dead air p50 ms | p95 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for p in policies:
            print(row(p.name, results[(p.name, asr)]))
        print()
    asr_s = evaluation.asr_seconds
    print(
        f"ASR per segment: n={len(asr_s)} p50 {percentile(asr_s, 50) * 1000:.0f} ms, "
        f"p95 {percentile(asr_s, 95) * 1000:.0f} ms; whole run {wall:.1f} s"
    )
    if args.verbose:
        for p in policies:
            for o in results[(p.name, True)]:
                if o.false_cut_ins or (o.dead_air_s or 0) > 2.0:
                    parts = " | ".join(
                        f"{(at - o.true_end_us) / 1000:+.0f} ms {t.reason}: {t.text!r}" for at, t in o.turns
                    )
                    print(f"{p.name:45} {o.id:24} {parts}")


if __name__ == "__main__":
    main()
