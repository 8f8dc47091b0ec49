"""Code generated from `proto/voicebot/v1` by `make proto`; never edit the `*_pb2` files by hand."""

from voicebot.events.envelope_pb2 import DeadLetter, Envelope, Mark
from voicebot.events.events_pb2 import (
    ApprovedReply,
    AudioUtterance,
    BotText,
    CallCommand,
    CallLifecycle,
    ChatTurn,
    ComplianceDecision,
    Contact,
    DialCommand,
    DialRequest,
    LlmRequest,
    Outcome,
    Transcript,
    TtsAudio,
    Usage,
)

__all__ = [
    "ApprovedReply",
    "AudioUtterance",
    "BotText",
    "CallCommand",
    "CallLifecycle",
    "ChatTurn",
    "ComplianceDecision",
    "Contact",
    "DeadLetter",
    "DialCommand",
    "DialRequest",
    "Envelope",
    "LlmRequest",
    "Mark",
    "Outcome",
    "Transcript",
    "TtsAudio",
    "Usage",
]
