"""No phone number reaches a log line unmasked."""

from __future__ import annotations

import json
import subprocess
import sys

from voicebot.observability import mask_phone


def test_mask_phone_keeps_only_prefix_and_last_digits() -> None:
    assert mask_phone("+15551234567") == "+1555*****67"
    assert mask_phone("call 5551234567 now") == "call 5551****67 now"
    assert mask_phone("turn 12 of 3") == "turn 12 of 3"


def test_log_lines_are_json_with_masked_numbers() -> None:
    code = (
        "import structlog; from voicebot.observability import configure_logging;"
        "configure_logging('t');"
        "structlog.get_logger().info('dialing', to='+15551234567', note='x +4930123456789')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stderr
    line = json.loads(out.strip().splitlines()[-1])
    assert line["event"] == "dialing" and line["service"] == "t"
    assert "1234567" not in out and "0123456789" not in out
    assert line["to"].startswith("+1555") and line["to"].endswith("67")
