"""The generated event code matches proto/ (a stale `make proto` fails here)."""

from __future__ import annotations

from pathlib import Path

from voicebot.protogen import EVENTS_DIR, generate


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    assert fresh, "no proto files found"
    for path in fresh:
        committed = EVENTS_DIR / path.name
        assert committed.exists(), f"{committed.name} missing: run `make proto`"
        assert committed.read_bytes() == path.read_bytes(), f"{committed.name} is stale: run `make proto`"
