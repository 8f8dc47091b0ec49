"""Start the whole system on this machine: broker, every service, simulated customers.

`make run`, the end-to-end tests and the benchmarks all use this one launcher, so what is measured is
what the demo runs. Every process gets free ports and is stopped (then killed) on exit, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voicebot.broker import create_topics, free_port, start_tansu, stop_process
from voicebot.config import REPO_ROOT, Settings
from voicebot.topics import LOCAL_PARTITIONS, all_topics

# Start order: consumers of a topic before its producers, telephony last among services.
SERVICES = ("crm", "compliance", "ivr", "llm", "tts", "asr", "dialogue", "telephony")

# CPU priority on a shared machine (what CPU requests do in k8s): the compute-bound stages of a turn
# first, bookkeeping last, so the broker's and the consumers' polling never delay a transcription.
NICENESS = {"asr": -5, "tts": -5, "telephony": -5, "crm": 10, "campaign": 10}


def _niceness(delta: int) -> Callable[[], None]:
    def apply() -> None:
        with contextlib.suppress(PermissionError):  # raising priority needs root; lowering always works
            os.nice(delta)

    return apply


@dataclass
class Stack:
    """A running local system; use as a context manager."""

    workdir: Path
    personas: Path = REPO_ROOT / "demo" / "personas.yaml"
    agents: Path = REPO_ROOT / "demo" / "agents.yaml"  # the contact centre calls are transferred to
    database_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICES
    bootstrap: str = ""
    sim_port: int = 0
    sim_log: Path = Path()
    agents_port: int = 0
    ports: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, http_port: int = 0) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "VOICEBOT_KAFKA_BOOTSTRAP": self.bootstrap,
            "VOICEBOT_DATABASE_URL": self.database_url,
            "VOICEBOT_HTTP_PORT": str(http_port),
            "VOICEBOT_NODE_ID": "local",
            "VOICEBOT_TELEPHONY_TRUNK": f"127.0.0.1:{self.sim_port}",
            "VOICEBOT_TELEPHONY_AGENT_TRUNK": f"127.0.0.1:{self.agents_port}",
            "VOICEBOT_TELEPHONY_SIP_PORT": "0",
            "VOICEBOT_TELEPHONY_WORKERS": "2",  # the second starts only when the first is nearly full
            **self.extra_env,
        }

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _spawn(self, name: str, args: list[str], http_port: int = 0) -> subprocess.Popen[bytes]:
        log = open(self.log_path(name), "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=self.env(http_port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_niceness(NICENESS.get(name, 0)),
        )
        self._procs[name] = proc
        return proc

    def start(self, ready_timeout: float = 240.0) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = self.database_url or Settings().resolved_database_url()
        port = free_port()
        self._procs["broker"] = start_tansu(port, log_file=self.log_path("broker"))
        self.bootstrap = f"127.0.0.1:{port}"
        asyncio.run(create_topics(self.bootstrap, all_topics(LOCAL_PARTITIONS)))
        self.sim_port, self.agents_port = free_port(), free_port()
        self.sim_log = self.workdir / "simulator.jsonl"
        for name, personas, sip_port in (
            ("simulator", self.personas, self.sim_port),
            ("agents", self.agents, self.agents_port),  # human agents on their own PBX
        ):
            self._spawn(
                name,
                [
                    sys.executable,
                    "-m",
                    "voicebot.simulator",
                    "--personas",
                    str(personas),
                    "--port",
                    str(sip_port),
                    "--log",
                    str(self.sim_log),
                ],
            )
        for name in self.services:
            self.ports[name] = free_port()
            self._spawn(name, [sys.executable, "-m", f"services.{name}"], self.ports[name])
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Poll every service's /readyz; a process that exits first fails fast with its log tail."""
        deadline = time.monotonic() + timeout
        pending = set(self.services)
        while pending:
            for name in sorted(pending):
                proc = self._procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.ports[name]}/readyz", timeout=1
                    ) as r:
                        if r.status == 200:
                            pending.discard(name)
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout}s: {sorted(pending)}")
            time.sleep(0.3)

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.log_path(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def run_campaign(
        self, contacts: Path, campaign: str, timeout: float = 600.0, *args: str
    ) -> subprocess.CompletedProcess[str]:
        """Run the campaign scheduler to completion (it exits when every contact is finished)."""
        return subprocess.run(
            [sys.executable, "-m", "services.campaign", str(contacts), "--campaign", campaign, *args],
            cwd=REPO_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self._procs.items()}

    def stop(self) -> None:
        """SIGTERM everything (services first, broker last), then SIGKILL what did not stop."""
        order = [n for n in self._procs if n != "broker"]
        for name in order:
            proc = self._procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name in order:
            proc = self._procs[name]
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if "broker" in self._procs:
            stop_process(self._procs["broker"])
        self._procs.clear()

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
