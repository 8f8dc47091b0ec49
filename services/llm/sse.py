"""Server-sent events of the OpenAI-compatible streaming chat API (vLLM speaks the same)."""

from __future__ import annotations

import json
from dataclasses import dataclass


class SseDecoder:
    """Line by line: an event's data (multi-line data joined) comes back at its closing blank line."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None  # comment / keep-alive
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data


@dataclass(slots=True)
class ChatDelta:
    content: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    done: bool = False


def parse_chunk(data: str) -> ChatDelta:
    """One `chat.completion.chunk` (or `[DONE]`); an `error` object raises."""
    if data.strip() == "[DONE]":
        return ChatDelta(done=True)
    obj = json.loads(data)
    if "error" in obj:
        err = obj["error"]
        raise RuntimeError(f"LLM server error: {err.get('message', err) if isinstance(err, dict) else err}")
    delta = ChatDelta()
    choices = obj.get("choices") or []
    if choices:
        choice = choices[0]
        delta.content = (choice.get("delta") or {}).get("content") or ""
        delta.finish_reason = choice.get("finish_reason")
    usage = obj.get("usage")
    if usage:
        delta.prompt_tokens = usage.get("prompt_tokens")
        delta.completion_tokens = usage.get("completion_tokens")
    return delta
