"""Bot audio queueing: streamed chunks become 20 ms frames with the turn's start/finish tags."""

from __future__ import annotations

from services.telephony.playback import FRAME_BYTES, PlaybackQueue, TurnEvent


def tags(q: PlaybackQueue) -> list[tuple[int, tuple[TurnEvent, ...]]]:
    return [(i, f.tag) for i, f in enumerate(q.frames) if f.tag]


def test_chunks_are_framed_as_they_arrive_with_carry_and_padding() -> None:
    q = PlaybackQueue()
    assert q.add("t1", b"\x01" * 1000, final=False) == 1  # 640 queued now, 360 carried
    assert len(q.frames) == 1 and not q.idle
    assert q.add("t1", b"\x02" * 1000, final=False) == 2  # 360 + 1000 = 1360 → 2 frames, 80 carried
    assert q.add("t1", b"\x03" * 100, final=True) == 1  # 80 + 100 padded to one frame
    assert all(len(f.pcm) == FRAME_BYTES for f in q.frames)
    audio = b"".join(f.pcm for f in q.frames)
    assert audio[:2100] == b"\x01" * 1000 + b"\x02" * 1000 + b"\x03" * 100
    assert audio[2100:] == b"\x00" * (4 * FRAME_BYTES - 2100)
    assert tags(q) == [(0, (TurnEvent("started", "t1"),)), (3, (TurnEvent("finished", "t1", False),))]


def test_single_frame_turn_starts_and_finishes_on_one_frame() -> None:
    q = PlaybackQueue()
    q.add("t1", b"\x01" * 10, final=True, end_call=True)
    assert len(q.frames) == 1
    assert q.frames[0].tag == (TurnEvent("started", "t1"), TurnEvent("finished", "t1", True))


def test_empty_final_chunk_still_finishes_the_turn() -> None:
    q = PlaybackQueue()
    q.add("t1", b"\x01" * FRAME_BYTES, final=False)
    q.add("t1", b"", final=True, end_call=True)
    assert [t for _, t in tags(q)] == [(TurnEvent("started", "t1"),), (TurnEvent("finished", "t1", True),)]


def test_odd_byte_counts_never_split_a_sample() -> None:
    q = PlaybackQueue()
    q.add("t1", b"\x01" * 641, final=True)
    assert all(len(f.pcm) == FRAME_BYTES for f in q.frames)


def test_stop_drops_queued_audio_and_late_chunks_of_cut_turns() -> None:
    q = PlaybackQueue()
    q.add("t1", b"\x01" * 3000, final=False)
    q.frames.popleft()  # the media thread played the first frame
    assert q.stop() == ["t1"]
    assert not q.frames and q.idle
    assert q.add("t1", b"\x01" * 3000, final=True) == 0  # TTS still streaming the cut reply
    assert q.add("t2", b"\x01" * 640, final=True) == 1  # the next reply plays
    assert q.frames[0].tag and q.frames[0].tag[0] == TurnEvent("started", "t2")


def test_stop_reports_a_fully_queued_but_unplayed_turn() -> None:
    q = PlaybackQueue()
    q.add("t1", b"\x01" * 6400, final=True)
    assert q.stop() == ["t1"]


def test_turns_play_in_arrival_order() -> None:
    q = PlaybackQueue()
    q.add("a", b"\x01" * 1280, final=True)
    q.add("b", b"\x02" * 1280, final=True)
    order = [e.turn_id for _, t in tags(q) for e in t]
    assert order == ["a", "a", "b", "b"]
    assert q.idle is False
    q.frames.clear()
    assert q.idle


def test_a_dropped_turn_never_plays_and_others_do() -> None:
    q = PlaybackQueue()
    q.drop("stale")
    assert q.add("stale", b"\x01\x00" * 640, final=True) == 0
    assert q.add("fresh", b"\x01\x00" * 640, final=True) == 2
    assert q.idle is False and {e.turn_id for f in q.frames if f.tag for e in f.tag} == {"fresh"}
