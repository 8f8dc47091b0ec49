"""Kamailio as the SIP front of a telephony node: one UDP address for inbound calls, spread over workers.

The config is infra/kamailio/kamailio.cfg (Debian's `kamailio` package, dispatcher module); what varies per
node (listen address, dispatcher list file, control socket) is passed as `-A` defines, so the file in the
repository is the one that runs and `kamailio -c` checks it. The process runs in the foreground (`-DD -E`),
as whatever user starts it (no system service, no root needed above port 1024), and follows its parent:
it gets SIGTERM when the node dies. The pool rewrites the dispatcher list as workers come and go and
reloads it over the binrpc control socket (`kamcmd dispatcher.reload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import structlog

from voicebot.config import REPO_ROOT

log = structlog.get_logger("voicebot.kamailio")

CONFIG = REPO_ROOT / "infra" / "kamailio" / "kamailio.cfg"
DISPATCHER_SET = 1
RELOAD_RETRY_S = 0.5  # a reload refused ("ongoing reload": reload_delta is 1 s) is tried again
START_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1


class FrontError(RuntimeError):
    """Kamailio is missing, did not start, or refused a command."""


def binary(name: str = "kamailio") -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        raise FrontError(f"{name} not found: install the Debian package `kamailio` (make install)")
    return path


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def dispatcher_list(targets: Iterable[str]) -> str:
    """The list file: one `setid uri` line per worker address ("host:port"), in a stable order."""
    lines = ["# media workers of this node, written by the telephony supervisor"]
    lines += [f"{DISPATCHER_SET} sip:{target}" for target in sorted(set(targets))]
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM when the node dies, even by SIGKILL, so no Kamailio outlives its node."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Front:
    """One Kamailio process in front of a node's workers; `set_targets` follows the pool."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ping_s: int = 1, workdir: Path | None = None):
        self.host = host
        self.port = port or free_udp_port(host)
        self.ping_s = ping_s
        self._own_dir = workdir is None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="voicebot-kamailio-"))
        self.list_file = self.dir / "dispatcher.list"
        self.ctl = self.dir / "kamailio_ctl"
        self.proc: asyncio.subprocess.Process | None = None
        self.targets: frozenset[str] = frozenset()
        self._applied: frozenset[str] | None = None
        self._lock = asyncio.Lock()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            binary(),
            "-DD",  # stay in the foreground (children are still forked)
            "-E",  # log to stderr
            "-f", str(CONFIG),
            "-Y", str(self.dir),  # runtime dir: no /run/kamailio, so no root needed
            "-P", str(self.dir / "kamailio.pid"),
            "-m", "32",
            "-M", "4",
            "-A", f"LISTEN=udp:{self.host}:{self.port}",
            "-A", f'DS_LIST="{self.list_file}"',
            "-A", f'CTL_SOCKET="unixs:{self.ctl}"',
            "-A", f"PING_S={self.ping_s}",
        ]  # fmt: skip

    async def start(self, targets: Iterable[str] = ()) -> None:
        self.targets = frozenset(targets)
        self.list_file.write_text(dispatcher_list(self.targets))
        self._applied = self.targets
        self.ctl.unlink(missing_ok=True)  # left by a Kamailio that died
        self.proc = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=None,
            stderr=None,
            start_new_session=True,  # a Ctrl-C to the node's group must not cut the BYEs of its drain
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.returncode is not None:
                raise FrontError(f"kamailio exited at start ({self.proc.returncode}); see its log above")
            if self.ctl.exists():
                try:
                    await self.rpc("core.uptime")
                    break
                except FrontError:
                    pass
            if time.monotonic() > deadline:
                await self.stop()
                raise FrontError("kamailio did not open its control socket in time")
            await asyncio.sleep(0.05)
        log.info("sip front ready", address=self.address, pid=self.proc.pid, workers=len(self.targets))

    async def rpc(self, *args: str) -> str:
        """One RPC over the control socket; kamcmd exits 0 even on an error reply, so its text decides."""
        proc = await asyncio.create_subprocess_exec(
            binary("kamcmd"),
            "-s",
            f"unixs:{self.ctl}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        if proc.returncode != 0 or text.lstrip().lower().startswith("error"):
            raise FrontError(f"kamcmd {' '.join(args)}: {text.strip()}")
        return text

    async def set_targets(self, targets: Iterable[str], timeout: float = 10.0) -> None:
        """Make Kamailio dispatch to exactly `targets`; returns once it has reloaded the list.

        Calls may overlap (the pool changes often); the last call's list wins.
        """
        self.targets = frozenset(targets)
        deadline = time.monotonic() + timeout
        async with self._lock:
            while self._applied != self.targets:
                wanted = self.targets
                tmp = self.list_file.with_suffix(".tmp")
                tmp.write_text(dispatcher_list(wanted))
                tmp.replace(self.list_file)
                try:
                    await self.rpc("dispatcher.reload")
                except FrontError as exc:
                    if self.proc is None or self.proc.returncode is not None:
                        raise
                    if time.monotonic() > deadline:
                        raise
                    log.debug("dispatcher reload refused, retrying", error=str(exc))
                    await asyncio.sleep(RELOAD_RETRY_S)
                    continue
                self._applied = wanted
                log.info("sip front follows the pool", workers=len(wanted))

    async def destinations(self) -> dict[str, str]:
        """What Kamailio dispatches to now: uri → flags ("AP" active+probing, "IP" inactive...)."""
        try:
            text = await self.rpc("dispatcher.list")
        except FrontError as exc:
            if "No Destination Sets" in str(exc):
                return {}
            raise
        found: dict[str, str] = {}
        uri = ""
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("URI:"):
                uri = line.split(":", 1)[1].strip()
            elif line.startswith("FLAGS:") and uri:
                found[uri] = line.split(":", 1)[1].strip()
                uri = ""
        return found

    async def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                log.error("kamailio did not stop in time; killing it")
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):  # its children too (its own process group)
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
