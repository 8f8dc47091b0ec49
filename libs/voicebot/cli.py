"""`voicebot` command line: broker, topics, campaigns, simulated customers, DNC, database, demo."""

from __future__ import annotations

import argparse
import asyncio
import sys


def _broker(args: argparse.Namespace) -> int:
    from voicebot.broker import run_broker

    run_broker(args.port)
    return 0


def _topics(args: argparse.Namespace) -> int:
    from voicebot.broker import create_topics
    from voicebot.config import Settings, load

    asyncio.run(create_topics(load(Settings).kafka_bootstrap))
    print("topics created")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    broker = sub.add_parser("broker", help="run the local Kafka-protocol broker (tansu, in memory)")
    broker.add_argument("--port", type=int, default=9092)
    broker.set_defaults(func=_broker)

    topics = sub.add_parser("topics", help="create every topic on VOICEBOT_KAFKA_BOOTSTRAP (idempotent)")
    topics.set_defaults(func=_topics)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
