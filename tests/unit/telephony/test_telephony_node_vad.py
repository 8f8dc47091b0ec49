"""The node's VAD: the wire format, and a worker's client against the supervisor's batch over a real
socket pair with real Silero (the same answers as the worker's own Silero would give)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.telephony import node_vad
from voicebot import vad
from voicebot.simulator import speak


def _chunks(pcm: bytes) -> list[bytes]:
    step = node_vad.CHUNK_BYTES
    return [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]


def test_request_and_reply_round_trip() -> None:
    chunks = [(7, b"\x01\x02" * vad.CHUNK), (9, b"\x03\x04" * vad.CHUNK)]
    req = node_vad.unpack_request(node_vad.pack_request(41, chunks, ended=[3]))
    assert (req.seq, req.streams, req.ended) == (41, [7, 9], [3])
    assert req.pcm == [pcm for _, pcm in chunks]
    seq, probs = node_vad.unpack_reply(node_vad.pack_reply(41, [0.25, 0.75]))
    assert seq == 41 and probs == [0.25, 0.75]


def test_malformed_messages_are_refused() -> None:
    good = node_vad.pack_request(1, [(1, b"\x00" * node_vad.CHUNK_BYTES)])
    for bad in (b"", good[:-1], good + b"\x00", b"\xff" * 8):
        with pytest.raises(ValueError):
            node_vad.unpack_request(bad)
    with pytest.raises(ValueError):
        node_vad.unpack_reply(node_vad.pack_reply(1, [0.5])[:-2])
    with pytest.raises(ValueError):
        node_vad.pack_request(1, [(1, b"\x00" * 10)])
    with pytest.raises(ValueError):
        node_vad.pack_request(1, [(1, b"\x00" * node_vad.CHUNK_BYTES)] * (node_vad.MAX_CHUNKS + 1))


async def test_node_answers_each_worker_chunk_as_its_own_silero_would() -> None:
    speech = _chunks(speak("Hello, I would like to ask about my card."))
    noise = _chunks((np.random.default_rng(3).normal(0, 300, 16000)).astype("<i2").tobytes())
    node = node_vad.NodeVad()
    await node.start()
    answers: list[tuple[int, float]] = []
    client = node_vad.VadClient(
        node.open(0), lambda items, probs: answers.extend(zip(items, probs, strict=True))
    )
    client.start()
    try:
        # two calls; two chunks of the talker per request (a stream may come twice in one batch)
        rounds = min(len(speech) // 2, len(noise))
        for i in range(rounds):
            sent = [(1, speech[2 * i]), (2, noise[i]), (1, speech[2 * i + 1])]
            client.send(sent, [s for s, _ in sent])
            await asyncio.sleep(0.005)
        for _ in range(200):
            if len(answers) == 3 * rounds:
                break
            await asyncio.sleep(0.01)
        assert len(answers) == 3 * rounds
        talker, quiet = vad.SileroVad(), vad.SileroVad()
        want_talker = vad.batch_probabilities([talker] * (2 * rounds), speech[: 2 * rounds])
        want_quiet = vad.batch_probabilities([quiet] * rounds, noise[:rounds])
        got_talker = [p for s, p in answers if s == 1]
        got_quiet = [p for s, p in answers if s == 2]
        assert np.allclose(got_talker, want_talker, atol=1e-4)
        assert np.allclose(got_quiet, want_quiet, atol=1e-4)
        assert max(got_talker) > 0.9 and max(got_quiet) < 0.5
        # a call that ended is forgotten by the node; a bad message does not stop it answering
        client.forget(2)
        client.sock.send(b"garbage")
        answers.clear()
        client.send([(1, speech[0])], [1])
        for _ in range(100):
            if answers:
                break
            await asyncio.sleep(0.01)
        assert [s for s, _ in answers] == [1]
        assert set(node._workers[0].streams) == {1}
    finally:
        client.stop()
        node.stop()
