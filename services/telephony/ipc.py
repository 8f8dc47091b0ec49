"""Supervisor <-> media worker messages: one JSON object per line over the worker's stdin/stdout.

Protobuf messages travel base64-encoded, so both sides use the generated types and nothing is re-modelled.
supervisor → worker: {"op": "dial", "id", "event"}            (event: encoded envelope with its DialCommand)
                     {"op": "retire"}                         (the pool shrinks: take no new call, exit
                                                              once the last one has ended)
                     {"op": "inbox", "event"}                 (bot audio or a command for one of its calls:
                                                              the supervisor reads every worker's inbox topic
                                                              with one consumer, see supervisor.py)
worker → supervisor: {"op": "ready", "media_node", "sip_port", "slots"}
                     {"op": "draining"}                       (stopping or retiring: no more dials)
                     {"op": "stats", "frames"}                (every second: voicebot.sip.FrameTiming)
                     {"op": "accepted" | "rejected", "id", "call_id"?, "error"?}   (error "busy" or
                                                              "draining": try again elsewhere)
                     {"op": "call", "call_id", "env", "contact", "attempt", "direction", "answered"}
                     {"op": "ended", "call_id"}
"""

from __future__ import annotations

import base64
import json
from typing import Any, TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def pack(message: Message) -> str:
    return base64.b64encode(message.SerializeToString()).decode()


def unpack(cls: type[M], text: str) -> M:
    return cls.FromString(base64.b64decode(text))


def pack_bytes(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unpack_bytes(text: str) -> bytes:
    return base64.b64decode(text)


def line(op: str, **fields: Any) -> bytes:
    return (json.dumps({"op": op, **fields}, separators=(",", ":")) + "\n").encode()


def parse(raw: bytes) -> dict[str, Any] | None:
    """A message, or None for a line that is not one of ours (stray library output)."""
    try:
        msg = json.loads(raw)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) and "op" in msg else None
