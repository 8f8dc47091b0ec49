"""Intents from transcripts as ASR writes them: no punctuation, split contractions, odd casing."""

from __future__ import annotations

import pytest

from services.dialogue.intents import Intent, classify

CASES: list[tuple[str, Intent]] = [
    # opt-out wins over everything
    ("Stop calling me.", Intent.OPT_OUT),
    ("please stop calling me", Intent.OPT_OUT),
    ("Do not call me again.", Intent.OPT_OUT),
    ("dont call this number again", Intent.OPT_OUT),
    ("Don't ever call me again!", Intent.OPT_OUT),
    ("Remove me from your list.", Intent.OPT_OUT),
    ("remove my number please", Intent.OPT_OUT),
    ("Take me off your list.", Intent.OPT_OUT),
    ("take me off the calling list", Intent.OPT_OUT),
    ("Put me on your do not call list", Intent.OPT_OUT),
    ("I'm not interested, stop calling.", Intent.OPT_OUT),
    ("Never call me again", Intent.OPT_OUT),
    ("unsubscribe", Intent.OPT_OUT),
    ("I don't want any more calls", Intent.OPT_OUT),
    ("Do not contact me", Intent.OPT_OUT),
    # not interested
    ("I'm not interested.", Intent.NOT_INTERESTED),
    ("not interested thanks", Intent.NOT_INTERESTED),
    ("No thanks.", Intent.NOT_INTERESTED),
    ("no thank you", Intent.NOT_INTERESTED),
    ("I already have a credit card.", Intent.NOT_INTERESTED),
    ("It's not for me.", Intent.NOT_INTERESTED),
    ("I don't need another card", Intent.NOT_INTERESTED),
    ("I'll pass.", Intent.NOT_INTERESTED),
    ("Not right now.", Intent.NOT_INTERESTED),
    ("No, I'm good.", Intent.NOT_INTERESTED),
    # questions
    ("What is the interest rate?", Intent.QUESTION),
    ("what's the annual fee", Intent.QUESTION),
    ("How much cash back do I get", Intent.QUESTION),
    ("Is there an annual fee?", Intent.QUESTION),
    ("Can I use it abroad?", Intent.QUESTION),
    ("can i get a second card for my wife", Intent.QUESTION),
    ("Are there any foreign transaction fees", Intent.QUESTION),
    ("Does it have a sign up bonus", Intent.QUESTION),
    ("when would I get the card", Intent.QUESTION),
    ("Yes, what's the credit limit?", Intent.QUESTION),
    ("I was wondering about the APR", Intent.QUESTION),
    ("tell me about the rewards", Intent.QUESTION),
    ("the annual fee?", Intent.QUESTION),
    ("Do you charge for balance transfers", Intent.QUESTION),
    # wants a human
    ("Can I speak to a real person?", Intent.WANTS_HUMAN),
    ("let me talk to a human", Intent.WANTS_HUMAN),
    ("I want to speak with a representative", Intent.WANTS_HUMAN),
    ("operator", Intent.WANTS_HUMAN),
    ("transfer me to someone please", Intent.WANTS_HUMAN),
    # goodbye
    ("No, that's all.", Intent.GOODBYE),
    ("no thats all", Intent.GOODBYE),
    ("No thanks, bye.", Intent.GOODBYE),
    ("Nope.", Intent.GOODBYE),
    ("no", Intent.GOODBYE),
    ("No, not him all. Thank you.", Intent.GOODBYE),
    ("Nope, thank you.", Intent.GOODBYE),
    ("Goodbye!", Intent.GOODBYE),
    ("that is it thank you bye bye", Intent.GOODBYE),
    ("nothing else thanks", Intent.GOODBYE),
    ("No more questions.", Intent.GOODBYE),
    ("have a good day", Intent.GOODBYE),
    # interested
    ("Yes.", Intent.INTERESTED),
    ("yeah sounds good", Intent.INTERESTED),
    ("Sure, tell me more.", Intent.INTERESTED),
    ("I'm interested.", Intent.INTERESTED),
    ("okay", Intent.INTERESTED),
    ("sign me up", Intent.INTERESTED),
    # unknown
    ("", Intent.UNKNOWN),
    ("   ", Intent.UNKNOWN),
    ("uh hmm", Intent.UNKNOWN),
    ("the weather is nice", Intent.UNKNOWN),
    ("...", Intent.UNKNOWN),
]


@pytest.mark.parametrize(("text", "intent"), CASES)
def test_classify(text: str, intent: Intent) -> None:
    assert classify(text) is intent


def test_enough_phrasings() -> None:
    assert len(CASES) >= 40
