"""Transcripts are redacted before they are stored: card numbers never reach the CRM (DESIGN rules)."""

from __future__ import annotations

import re

# 13–19 digits, optionally grouped by spaces or dashes (how ASR writes a read-out card number)
CARD = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
# any other run of 7+ digits: phone, account or ID numbers
LONG_NUMBER = re.compile(r"(?<![\d])(?:\d[ -]?){6,}\d(?![\d])")


def redact(text: str) -> str:
    return LONG_NUMBER.sub("[number]", CARD.sub("[card number]", text))
