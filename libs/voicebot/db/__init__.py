"""The shared database: models, migrations and the few writes more than one service makes.

`upgrade(url)` brings any database (PostgreSQL or SQLite) to the newest Alembic revision; every
service that touches the database runs it at start (idempotent, serialised by a PostgreSQL advisory
lock), so start order never matters.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from voicebot.db.models import (
    Base,
    Call,
    DecisionRow,
    DncEntry,
    OutcomeRow,
    ProcessedEvent,
    Turn,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x766F6963  # pg advisory lock key: "voic"

__all__ = [
    "MIGRATIONS_DIR",
    "Base",
    "Call",
    "DecisionRow",
    "DncEntry",
    "OutcomeRow",
    "ProcessedEvent",
    "Turn",
    "add_dnc",
    "connect",
    "load_dnc",
    "upgrade",
    "upsert_dnc",
    "utc_from_us",
]

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def connect(url: str) -> Engine:
    """One pooled engine per URL and process; a SQLite file's folder is created on demand."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
                Path(url.removeprefix("sqlite:///").split("?")[0]).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, pool_pre_ping=True)
            _engines[url] = engine
        return engine


def upgrade(url: str | Engine, revision: str = "head") -> None:
    """Run the Alembic migrations in `voicebot/db/migrations` up to `revision`."""
    from alembic import command
    from alembic.config import Config

    engine = connect(url) if isinstance(url, str) else url
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def utc_from_us(at_us: int) -> datetime | None:
    return datetime.fromtimestamp(at_us / 1e6, UTC) if at_us else None


def _insert(conn: Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def upsert_dnc(conn: Connection, tenant_id: str, phone: str, source: str, at: datetime | None = None) -> None:
    """Add a number to a tenant's do-not-call list; already there is fine (opt-outs replay)."""
    stmt = _insert(conn)(DncEntry).values(
        tenant_id=tenant_id, phone=phone, source=source, added_at=at or datetime.now(UTC)
    )
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["tenant_id", "phone"]))


def add_dnc(url: str, tenant_id: str, phone: str, source: str = "manual") -> None:
    """Seed the do-not-call list (CLI, demo, tests); migrates first so it works on an empty database."""
    upgrade(url)
    with connect(url).begin() as conn:
        upsert_dnc(conn, tenant_id, phone, source)


def load_dnc(url: str | Engine) -> dict[str, set[str]]:
    """Every tenant's do-not-call numbers."""
    engine = connect(url) if isinstance(url, str) else url
    registry: dict[str, set[str]] = {}
    with engine.connect() as conn:
        for tenant_id, phone in conn.execute(sa.select(DncEntry.tenant_id, DncEntry.phone)):
            registry.setdefault(tenant_id, set()).add(phone)
    return registry
