"""`voicebot` command line: broker, topics, campaigns, simulated customers, DNC, database, demo."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable


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


def _dnc(args: argparse.Namespace) -> int:
    from voicebot import db
    from voicebot.config import Settings, load

    db.add_dnc(load(Settings).resolved_database_url(), args.tenant, args.phone, source="cli")
    print("added to the do-not-call list")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from voicebot import db
    from voicebot.config import Settings, load

    db.upgrade(load(Settings).resolved_database_url())
    print("database at the newest revision")
    return 0


def _campaign_start(argv: list[str]) -> int:
    from services.campaign.app import main as campaign_main

    return campaign_main(argv)


def _simulate(argv: list[str]) -> int:
    from voicebot.simulator import main as simulator_main

    return simulator_main(argv) or 0


def _demo(argv: list[str]) -> int:
    from voicebot.demo import main as demo_main

    return demo_main(argv)


# Commands with a parser of their own: everything after the command words goes to it (--help too).
DELEGATED: dict[tuple[str, ...], tuple[Callable[[list[str]], int], str]] = {
    ("campaign", "start"): (
        _campaign_start,
        "dial a contacts CSV with a campaign until every contact is done",
    ),
    ("simulate",): (_simulate, "simulated customers answering SIP calls"),
    ("demo",): (_demo, "the whole system with a demo campaign (what `make run` does)"),
}


def build_parser() -> argparse.ArgumentParser:
    epilog = "\n".join(
        f"  voicebot {' '.join(words)} --help   {text}" for words, (_, text) in DELEGATED.items()
    )
    parser = argparse.ArgumentParser(
        prog="voicebot",
        description=__doc__,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    broker = sub.add_parser("broker", help="run the local Kafka-protocol broker (tansu, in memory)")
    broker.add_argument("--port", type=int, default=9092)
    broker.set_defaults(func=_broker)

    topics = sub.add_parser("topics", help="create every topic on VOICEBOT_KAFKA_BOOTSTRAP (idempotent)")
    topics.set_defaults(func=_topics)

    dnc = sub.add_parser("dnc", help="do-not-call list").add_subparsers(dest="action", required=True)
    add = dnc.add_parser("add", help="add a number (E.164) to a tenant's do-not-call list")
    add.add_argument("phone")
    add.add_argument("--tenant", required=True)
    add.set_defaults(func=_dnc)

    dbp = sub.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    dbp.add_parser("upgrade", help="run the migrations").set_defaults(func=_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for words, (run, _) in DELEGATED.items():
        if tuple(argv[: len(words)]) == words:
            return run(argv[len(words) :])
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
