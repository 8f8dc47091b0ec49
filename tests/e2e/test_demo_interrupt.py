"""`make run` stops everything it started when the user presses Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from voicebot.config import REPO_ROOT

pytestmark = pytest.mark.e2e


def _processes_with(marker: str) -> list[int]:
    """Pids whose environment carries `marker` (every process the demo starts inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_ctrl_c_stops_the_demo_and_every_process_it_started() -> None:
    marker = f"VOICEBOT_TEST_RUN={uuid.uuid4().hex}"
    key, value = marker.split("=")
    demo = subprocess.Popen(
        [sys.executable, "-m", "voicebot.cli", "demo"],
        cwd=REPO_ROOT,
        env={**os.environ, key: value},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 300
        assert demo.stdout is not None
        for line in demo.stdout:
            output.append(line)
            if line.startswith("ready;"):
                break
            assert time.monotonic() < deadline, "demo not ready"
        assert len(_processes_with(marker)) >= 9  # broker, simulator, 7 services (+ workers)
        time.sleep(3)  # calls are being dialled now
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=90)
        output.append(rest)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    text = "".join(output)
    assert demo.returncode == 130, text
    assert "interrupted: stopping everything" in text and "stopped everything" in text
    leftovers = _processes_with(marker)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"still running after Ctrl-C: {leftovers}"
