"""Keypad answers: digits gathered until '#', a digit limit, or the timeout."""

from __future__ import annotations

import pytest

from services.telephony.dtmf import Collector, clean


def test_hash_ends_the_answer_without_itself() -> None:
    c = Collector(max_digits=0)
    assert [c.push(d) for d in "123"] == [None, None, None]
    assert c.push("#") == "123"
    assert c.digits == []


def test_max_digits_ends_the_answer() -> None:
    c = Collector(max_digits=2)
    assert c.push("4") is None
    assert c.push("2") == "42"


def test_timeout_returns_what_was_pressed() -> None:
    c = Collector(max_digits=6)
    c.push("7")
    assert c.done() == "7"


def test_clean_accepts_dtmf_symbols_and_refuses_the_rest() -> None:
    assert clean(" 12*#ab ") == "12*#AB"
    with pytest.raises(ValueError, match="not DTMF"):
        clean("12;x")
