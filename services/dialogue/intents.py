"""What the customer wants, from one transcript: keyword and regex rules that tolerate ASR text.

ASR drops punctuation, splits or joins words ("don't" → "dont", "do not"), and mishears a word or
two, so patterns work on lower-cased, punctuation-free text and accept common variants. Rules are
checked in priority order: an opt-out anywhere in the sentence wins over everything else.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    WANTS_HUMAN = "wants_human"
    NOT_INTERESTED = "not_interested"
    GOODBYE = "goodbye"
    QUESTION = "question"
    INTERESTED = "interested"
    UNKNOWN = "unknown"


NOT = r"(?:do not|dont|don t|doesnt|does not|never)"

RULES: list[tuple[Intent, re.Pattern[str]]] = [
    (
        Intent.OPT_OUT,
        re.compile(
            r"\b(?:stop (?:calling|call|ringing|contacting|phoning)"
            rf"|{NOT} (?:ever )?(?:call|contact|phone|ring)"
            r"|remove (?:me|my (?:number|name|details))|take me off|take my (?:number|name) off"
            r"|(?:put|add) me (?:on|to) (?:the|your)? ?(?:do not call|dnc|dont call)"
            r"|unsubscribe|opt (?:me )?out|(?:no|any) more calls|quit calling|lose my number"
            r"|delete my (?:number|details|data))\b"
        ),
    ),
    (
        Intent.WANTS_HUMAN,
        re.compile(
            r"\b(?:(?:real|live|actual) (?:person|human|agent)|human being|(?:speak|talk)(?:ing)? (?:to|with)"
            r" (?:a |an |some )?(?:person|human|agent|representative|rep|manager|someone|somebody|operator)"
            r"|operator|representative|transfer me|put me through)\b"
        ),
    ),
    (
        Intent.NOT_INTERESTED,
        re.compile(
            rf"\b(?:not interested|no interest|un interested|uninterested|{NOT} (?:need|want)"
            r"|no thanks?(?: you)?$|no thank you$|not for me|(?:i m|im|i am) not (?:looking|buying)"
            r"|i ll pass|ill pass|pass on (?:it|that|this)|already have (?:a|one|enough)"
            r"|not right now|not now|not today|no i m good|no im good|no i am good)\b"
        ),
    ),
    (
        Intent.GOODBYE,
        re.compile(
            r"\b(?:bye|goodbye|good bye|bye bye|that s all|thats all|that is all|that s it|thats it"
            r"|nothing else|no more questions|no further questions|have a (?:good|nice|great) (?:day|one)"
            r"|i have to go|i gotta go|got to go|gotta run)\b"
            r"|^(?:no|nope|nah|no no|no questions?|no not really|not really)$"
            # "no, that is all, thank you" with the middle misheard
            r"|^(?:no|nope|nah)\b.*\b(?:thank you|thanks)$"
        ),
    ),
    (
        Intent.QUESTION,
        re.compile(
            r"^(?:what|whats|what s|how|hows|why|when|where|which|who|whose|is|are|do|does|did|can|could"
            r"|will|would|should|may|tell me)\b"
            r"|\b(?:can i|could i|can you|could you|is there|are there|do you|does it|does the|what is|what s"
            r"|whats|how much|how many|how do|how does|how long|i (?:want|d like|would like) to know"
            r"|i was wondering|wondering if|question|explain|what about|tell me about)\b"
        ),
    ),
    (
        Intent.INTERESTED,
        re.compile(
            r"\b(?:interested|yes|yeah|yep|yup|sure|ok|okay|sounds (?:good|great|nice|interesting)"
            r"|sign me up|tell me more|go ahead|why not|i d like (?:it|that|one)|i want (?:it|that|one)"
            r"|of course|absolutely|definitely|great)\b"
        ),
    ),
]


def normalise(text: str) -> str:
    """Lower case, apostrophes and punctuation to spaces, single spaces: "Don't!" → "don t"."""
    return " ".join(re.sub(r"[^a-z0-9?]+", " ", text.lower()).replace("?", " ").split())


def classify(text: str) -> Intent:
    """The first matching rule in priority order; a trailing "?" makes unknown text a question."""
    clean = normalise(text)
    if not clean:
        return Intent.UNKNOWN
    for intent, pattern in RULES:
        if pattern.search(clean):
            return intent
    return Intent.QUESTION if text.strip().endswith("?") else Intent.UNKNOWN
