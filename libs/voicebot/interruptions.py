"""Replies the customer talked over: stages that are still producing one stop as soon as they hear.

The media worker cuts the audio itself and drops late chunks (BARGE_IN on `call.lifecycle`); LLM and TTS
follow the same event so they do not spend a GPU or a CPU core on words nobody will hear.
"""

from __future__ import annotations

from collections import OrderedDict

from voicebot import topics
from voicebot.bus import Event
from voicebot.events import CallLifecycle
from voicebot.service import Service


class CutTurns:
    """Bounded set of turn ids cut by barge-in (old ones are forgotten first)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, turn_id: str) -> None:
        self._ids[turn_id] = None
        self._ids.move_to_end(turn_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def __contains__(self, turn_id: object) -> bool:
        return turn_id in self._ids


def follow(svc: Service) -> CutTurns:
    """Subscribe `svc` to barge-ins; its handlers check `turn_id in cut` between pieces of work."""
    cut = CutTurns()

    @svc.bus.on(topics.LIFECYCLE, CallLifecycle)
    async def barge_in(event: Event[CallLifecycle]) -> None:
        if event.payload.kind == CallLifecycle.BARGE_IN and event.payload.turn_id:
            cut.add(event.payload.turn_id)

    return cut
