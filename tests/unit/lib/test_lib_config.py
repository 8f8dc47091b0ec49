"""Bad configuration fails fast at start, naming the setting."""

from __future__ import annotations

import subprocess
import sys


def _start_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "from voicebot.config import Settings, load; load(Settings); print('loaded')"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_bad_setting_exits_with_its_name() -> None:
    result = _start_with({"VOICEBOT_HTTP_PORT": "99999", "PATH": ""})
    assert result.returncode == 2
    assert "VOICEBOT_HTTP_PORT" in result.stderr
    assert "loaded" not in result.stdout


def test_good_settings_load() -> None:
    result = _start_with({"VOICEBOT_HTTP_PORT": "8080", "VOICEBOT_LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded"


def test_unreachable_broker_is_a_clear_error_not_a_traceback() -> None:
    env = {"VOICEBOT_KAFKA_BOOTSTRAP": "127.0.0.1:1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "services.dialogue"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "dialogue: cannot reach Kafka at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr
