"""TTS message rules: rate default, splitting under the size limit, seq numbering per turn."""

from __future__ import annotations

from services.tts.packets import DEFAULT_RATE, MAX_PCM_BYTES, TurnSequencer, split_pcm, target_rate


def test_rate_defaults_to_16k_when_not_told() -> None:
    assert target_rate(0) == DEFAULT_RATE == 16_000
    assert target_rate(8000) == 8000


def test_split_keeps_every_byte_and_whole_samples() -> None:
    pcm = bytes(range(256)) * 9  # 2304 bytes
    pieces = split_pcm(pcm, max_bytes=501)
    assert b"".join(pieces) == pcm
    assert all(len(p) <= 500 and len(p) % 2 == 0 for p in pieces)
    assert split_pcm(b"") == []
    assert split_pcm(b"\x01\x00" * 10) == [b"\x01\x00" * 10]


def test_default_limit_keeps_a_message_under_512kb() -> None:
    minute_at_16k = b"\x00\x00" * 16_000 * 60
    pieces = split_pcm(minute_at_16k)
    assert len(pieces) == 4 and max(map(len, pieces)) == MAX_PCM_BYTES < 512 * 1024


def test_seq_counts_per_turn_across_replies_and_forgets_old_turns() -> None:
    seq = TurnSequencer(capacity=2)
    assert [seq.next("t1"), seq.next("t1"), seq.next("t2"), seq.next("t1")] == [0, 1, 0, 2]
    seq.next("t3")  # t2 is the least recently used turn: forgotten
    assert seq.next("t1") == 3
    assert seq.next("t2") == 0


def test_first_clause_is_spoken_on_its_own_when_both_sides_are_long() -> None:
    from services.tts.packets import first_clause_split

    text = "Hello Ada Lovelace, this is Alex, an automated assistant calling on behalf of Acme Bank."
    assert first_clause_split(text) == [
        "Hello Ada Lovelace,",
        "this is Alex, an automated assistant calling on behalf of Acme Bank.",
    ]
    assert first_clause_split("Yes, you can add up to four users.") == ["Yes, you can add up to four users."]
    assert first_clause_split("No comma in this one at all.") == ["No comma in this one at all."]
    short_tail = "The card has no annual fee, ever."
    assert first_clause_split(short_tail) == [short_tail]
    other_sentence = "It is free. Later, we can talk about the interest rate."
    assert first_clause_split(other_sentence) == [other_sentence]
