"""Shared fixtures: a real broker on a free port, the real database, isolated per test run."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from voicebot.broker import create_topics, free_port, start_tansu, stop_process
from voicebot.config import Settings
from voicebot.topics import LOCAL_PARTITIONS, all_topics


def _tansu() -> Iterator[str]:
    """tansu in memory on a free port, topics created; stopped when the fixture ends."""
    port = free_port()
    proc = start_tansu(port)
    bootstrap = f"127.0.0.1:{port}"
    asyncio.run(create_topics(bootstrap, all_topics(LOCAL_PARTITIONS)))
    yield bootstrap
    stop_process(proc)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """One broker for the session's tests."""
    yield from _tansu()


@pytest.fixture(scope="module")
def own_kafka_bootstrap() -> Iterator[str]:
    """A broker for one module only: for modules whose consumer groups and timing must not depend on
    what earlier modules left in the session broker (after a long run, tansu was seen to stall a
    consumer group's join for minutes)."""
    yield from _tansu()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL schema per run when the local server is up, else a SQLite file."""
    url = Settings().resolved_database_url()
    if not url.startswith("postgresql"):
        path = f"/tmp/voicebot-test-{uuid.uuid4().hex}.db"
        yield f"sqlite:///{path}"
        if os.path.exists(path):
            os.remove(path)
        return
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield f"{url}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return Settings(kafka_bootstrap=kafka_bootstrap, handler_retries=2)
