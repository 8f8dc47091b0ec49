"""The SIP front alone: the real Kamailio (infra/kamailio/kamailio.cfg) in front of stand-in workers.

A stand-in worker is a UDP socket that answers OPTIONS (Kamailio's pings) with 200 and every INVITE with
a fixed final code, and counts what it got; a client sends INVITEs to the front. The whole node (real
media workers, the pool following the front) is tested in test_sip_load.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest

from voicebot.kamailio import Front

pytestmark = pytest.mark.skipif(shutil.which("kamailio") is None and not os.path.exists("/usr/sbin/kamailio"),
                                reason="Debian package kamailio not installed")  # fmt: skip


class StandIn(asyncio.DatagramProtocol):
    """Answers OPTIONS with 200 (unless `silent`) and INVITE with `code`; keeps the INVITE Call-IDs."""

    def __init__(self, code: int, silent: bool = False) -> None:
        self.code = code
        self.silent = silent
        self.invites: list[str] = []
        self.pings = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def address(self) -> str:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode(errors="replace")
        method = text.split(" ", 1)[0]
        if self.silent or method not in ("OPTIONS", "INVITE"):
            return
        if method == "OPTIONS":
            self.pings += 1
            code, reason = 200, "OK"
        else:
            self.invites.append(_header(text, "Call-ID"))
            code, reason = self.code, "Refused"
        assert self.transport is not None
        self.transport.sendto(_reply(text, code, reason).encode(), addr)


def _header(msg: str, name: str) -> str:
    for line in msg.split("\r\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _reply(request: str, code: int, reason: str) -> str:
    keep = [
        line for line in request.split("\r\n") if line.split(":", 1)[0] in ("Via", "From", "Call-ID", "CSeq")
    ]
    to = _header(request, "To")
    return (
        f"SIP/2.0 {code} {reason}\r\n"
        + "\r\n".join(keep)
        + f"\r\nTo: {to};tag=s1\r\nContent-Length: 0\r\n\r\n"
    )


class Caller(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[str] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait(data.decode(errors="replace"))


async def _endpoint(proto: asyncio.DatagramProtocol) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    return transport  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def stand_ins(*protos: StandIn) -> AsyncIterator[None]:
    transports = [await _endpoint(p) for p in protos]
    try:
        yield
    finally:
        for t in transports:
            t.close()


async def _invite(front: Front) -> int:
    """One INVITE to the front; the final status it relays."""
    caller = Caller()
    transport = await _endpoint(caller)
    try:
        host, port = transport.get_extra_info("sockname")[:2]
        call_id = uuid.uuid4().hex
        msg = (
            f"INVITE sip:1000@{front.address} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
            f"From: <sip:+15550001000@{host}:{port}>;tag=c1\r\nTo: <sip:1000@{front.address}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{host}:{port}>\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        transport.sendto(msg.encode(), (front.host, front.port))
        async with asyncio.timeout(10):
            while True:
                code = int((await caller.replies.get()).split(" ", 2)[1])
                if code >= 200:
                    return code
    finally:
        transport.close()


@pytest.fixture
async def front() -> AsyncIterator[Front]:
    f = Front()
    await f.start()
    try:
        yield f
    finally:
        pid = f.proc.pid if f.proc else None
        await f.stop()
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # no Kamailio left behind
        assert not f.dir.exists()


async def test_no_worker_gets_503(front: Front) -> None:
    assert await front.destinations() == {}
    assert await _invite(front) == 503


async def test_busy_worker_hands_the_invite_to_the_next(front: Front) -> None:
    a, b = StandIn(486), StandIn(486)
    async with stand_ins(a, b):
        await front.set_targets([a.address, b.address])
        assert set(await front.destinations()) == {f"sip:{a.address}", f"sip:{b.address}"}
        assert await _invite(front) == 486
        # both were tried once: the first said busy, so the front asked the other
        assert (len(a.invites), len(b.invites)) == (1, 1)


async def test_the_list_follows_the_pool(front: Front) -> None:
    a, b = StandIn(480), StandIn(404)
    async with stand_ins(a, b):
        await front.set_targets([a.address])
        await front.set_targets([a.address, b.address])  # quick changes: the reload is retried
        await front.set_targets([b.address])
        assert list(await front.destinations()) == [f"sip:{b.address}"]
        for _ in range(3):
            assert await _invite(front) == 404
        assert not a.invites and len(b.invites) == 3


async def test_a_silent_worker_is_pinged_out_of_rotation(front: Front) -> None:
    """A hung worker (its process alive, so the pool keeps it listed) stops getting INVITEs."""
    alive, hung = StandIn(486), StandIn(486, silent=True)
    async with stand_ins(alive, hung):
        await front.set_targets([alive.address, hung.address])
        async with asyncio.timeout(15):
            while not (await front.destinations()).get(f"sip:{hung.address}", "").startswith("I"):
                await asyncio.sleep(0.2)
        assert (await front.destinations())[f"sip:{alive.address}"].startswith("A")
        assert alive.pings > 0
        for _ in range(4):
            assert await _invite(front) == 486
        assert len(alive.invites) == 4  # none went to the hung one (it would have cost a 2 s timeout)
