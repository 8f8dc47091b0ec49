"""Call recordings on a node's disk: where each one lives, and the retention sweep.

Layout `<root>/<tenant>/<campaign>/<YYYY-MM-DD>/<call_id>.wav`, so retention (per campaign, in days) is
decided from the path and the file's age alone, without a database; the CRM keeps the file URI.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def path_for(root: Path, tenant: str, campaign: str, call_id: str, now: datetime | None = None) -> Path:
    day = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    parts = [_SAFE.sub("_", p) or "_" for p in (tenant, campaign, day, f"{call_id}.wav")]
    return root.joinpath(*parts)


def is_complete(path: Path) -> bool:
    """pjmedia writes a WAV's sizes when its recorder is destroyed (asynchronously, by the media clock):
    until then the RIFF size field is 0."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[:4] == b"RIFF" and int.from_bytes(head[4:], "little") > 36


def _files(root: Path) -> Iterator[tuple[str, str, Path]]:
    for path in root.glob("*/*/*/*.wav"):
        tenant, campaign = path.parts[-4], path.parts[-3]
        yield tenant, campaign, path


def sweep(root: Path, retention_days: Callable[[str], int | None], now_s: float | None = None) -> list[Path]:
    """Delete recordings older than their campaign's retention; returns what was deleted.

    `retention_days(campaign_id)` is None for an unknown campaign: its files are kept (a person decides).
    """
    now_s = time.time() if now_s is None else now_s
    deleted: list[Path] = []
    for _tenant, campaign, path in _files(root):
        days = retention_days(campaign)
        if days is None:
            continue
        try:
            age_s = now_s - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if age_s > days * 86400:
            path.unlink(missing_ok=True)
            deleted.append(path)
    for folder in sorted({p.parent for p in deleted}, reverse=True):  # empty day folders go too
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return deleted
