"""The do-not-call set per tenant: loaded from the `dnc` table at start, kept current from opt-outs.

An opt-out is added in memory first (the next dial is blocked at once), then upserted into the table
so it survives restarts.
"""

from __future__ import annotations

from collections.abc import Set

from voicebot.db import connect, load_dnc, upgrade, upsert_dnc


class DncRegistry:
    def __init__(self, url: str) -> None:
        self.url = url
        self._by_tenant: dict[str, set[str]] = {}

    def load(self) -> int:
        """Migrate (idempotent) and read every tenant's numbers; returns how many."""
        upgrade(self.url)
        self._by_tenant = load_dnc(self.url)
        return sum(len(numbers) for numbers in self._by_tenant.values())

    def numbers(self, tenant_id: str) -> Set[str]:
        return self._by_tenant.get(tenant_id, frozenset())

    def add(self, tenant_id: str, phone: str) -> None:
        """In memory only: takes effect for the very next dial request."""
        self._by_tenant.setdefault(tenant_id, set()).add(phone)

    def store(self, tenant_id: str, phone: str, source: str = "opt_out") -> None:
        """Upsert into the table (blocking I/O: call it from a thread)."""
        with connect(self.url).begin() as conn:
            upsert_dnc(conn, tenant_id, phone, source)
