"""Settings: every value comes from a `VOICEBOT_*` environment variable with a local default.

A bad value stops the process at start with the setting's name, never later in a call.
"""

from __future__ import annotations

import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """What every service needs: the broker, the database, the campaigns and its own HTTP port."""

    model_config = SettingsConfigDict(env_prefix="VOICEBOT_", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated")
    database_url: str = Field("", description="SQLAlchemy URL; empty: local PostgreSQL if up, else SQLite")
    campaigns_dir: Path = Field(REPO_ROOT / "campaigns", description="folder of campaign YAML files")
    http_host: str = Field("127.0.0.1", description="address of /healthz, /readyz, /metrics")
    http_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    handler_retries: int = Field(3, ge=1, le=20, description="attempts before a message goes to its DLQ")
    dedupe_window: int = Field(100_000, ge=1000, description="event ids remembered per process")
    fetch_max_wait_ms: int = Field(10, ge=0, le=500, description="consumer fetch wait on the call path")
    background_fetch_max_wait_ms: int = Field(250, ge=0, le=5000, description="fetch wait off the call path")
    commit_interval_ms: int = Field(
        100, ge=5, le=10_000, description="how often handled offsets are committed"
    )
    node_id: str = Field("", description="instance name; empty: hostname")

    def resolved_database_url(self) -> str:
        """Local PostgreSQL when it listens, else a SQLite file beside the repo (DESIGN.md)."""
        if self.database_url:
            return self.database_url
        try:
            with socket.create_connection(("127.0.0.1", 5432), timeout=0.3):
                return "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        except OSError:
            return f"sqlite:///{REPO_ROOT / 'var' / 'voicebot.db'}"

    def instance(self) -> str:
        return self.node_id or socket.gethostname()


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S]) -> S:
    """Build settings or exit with each bad setting's environment variable name."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        for err in exc.errors():
            name = (prefix + "_".join(str(p) for p in err["loc"])).upper()
            print(f"invalid setting {name}: {err['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def check_pinned_clock(value: str) -> str:
    """A setting that pins a service's clock (tests, the demo): empty, or an ISO 8601 time."""
    if value.strip():
        datetime.fromisoformat(value.strip())
    return value.strip()


def pinned_now(value: str) -> datetime:
    """The pinned time in UTC (a time without zone is UTC), or the real clock when `value` is empty."""
    if not value:
        return datetime.now(UTC)
    pinned = datetime.fromisoformat(value)
    return pinned.replace(tzinfo=UTC) if pinned.tzinfo is None else pinned.astimezone(UTC)
