"""Topic names of DESIGN.md in one place, with partition counts sized for the pools to scale."""

from __future__ import annotations

DIAL_REQUESTS = "campaign.dial-requests"
DIAL_COMMANDS = "telephony.dial-commands"
DECISIONS = "compliance.decisions"
LIFECYCLE = "call.lifecycle"
UTTERANCES = "audio.utterances"
TRANSCRIPTS = "asr.transcripts"
LLM_REQUESTS = "llm.requests"
LLM_REPLIES = "llm.replies"
REPLIES = "dialogue.replies"
TTS_AUDIO = "tts.audio"
CALL_COMMANDS = "call.commands"
OUTCOMES = "crm.outcomes"

# Partitions of the local broker (tests, `make run`): one consumer per pool on one machine.
LOCAL_PARTITIONS = 2

# Pools scale by consumer lag up to one consumer per partition (KEDA's max replicas = partitions).
PARTITIONS: dict[str, int] = {
    DIAL_REQUESTS: 6,
    DIAL_COMMANDS: 6,
    DECISIONS: 6,
    LIFECYCLE: 12,
    UTTERANCES: 24,
    TRANSCRIPTS: 12,
    LLM_REQUESTS: 24,
    LLM_REPLIES: 12,
    REPLIES: 12,
    TTS_AUDIO: 12,
    CALL_COMMANDS: 12,
    OUTCOMES: 6,
}


def node_inbox(media_node: str) -> str:
    """The topic a telephony media worker reads its own calls' audio and commands from."""
    return f"telephony.node.{media_node}"


def all_topics(partitions: int | None = None) -> dict[str, int]:
    """Every topic with its partitions, dead-letter topics (one partition) included.

    `partitions` overrides the production plan: one machine runs one consumer per pool, and every idle
    partition costs the local broker work on each poll.
    """
    topics = {name: partitions or n for name, n in PARTITIONS.items()}
    topics.update({f"{name}.dlq": 1 for name in PARTITIONS})
    return topics
