"""Recording paths and the retention sweep."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

from voicebot.recordings import is_complete, path_for, sweep


def test_path_is_per_tenant_campaign_and_day_and_safe(tmp_path: Path) -> None:
    path = path_for(tmp_path, "demo", "acme-card", "call-1", datetime(2026, 11, 25, tzinfo=UTC))
    assert path == tmp_path / "demo" / "acme-card" / "2026-11-25" / "call-1.wav"
    odd = path_for(tmp_path, "../x", "a/b", "c", datetime(2026, 1, 1, tzinfo=UTC))
    assert odd.parent.parent.parent.parent == tmp_path and ".." not in odd.parts


def _recording(tmp_path: Path, campaign: str, age_days: float, name: str) -> Path:
    path = path_for(tmp_path, "t", campaign, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    old = time.time() - age_days * 86400
    os.utime(path, (old, old))
    return path


def test_sweep_deletes_only_what_is_past_its_campaigns_retention(tmp_path: Path) -> None:
    old = _recording(tmp_path, "short", 10, "a")
    young = _recording(tmp_path, "short", 2, "b")
    kept_long = _recording(tmp_path, "long", 10, "c")
    unknown = _recording(tmp_path, "gone", 400, "d")
    retention = {"short": 7, "long": 30}
    deleted = sweep(tmp_path, retention.get)
    assert deleted == [old]
    assert not old.exists() and young.exists() and kept_long.exists() and unknown.exists()


def test_a_recording_is_complete_once_its_header_has_sizes(tmp_path: Path) -> None:
    path = tmp_path / "r.wav"
    path.write_bytes(b"RIFF" + (0).to_bytes(4, "little") + b"WAVE")
    assert not is_complete(path)
    path.write_bytes(b"RIFF" + (1000).to_bytes(4, "little") + b"WAVE")
    assert is_complete(path)
    assert not is_complete(tmp_path / "missing.wav")
