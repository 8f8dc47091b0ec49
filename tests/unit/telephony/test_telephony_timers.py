"""The media worker's timers must not keep what they hold alive after they ran.

A pjsua2 Call object freed late (by the garbage collector, at any moment) hangs up whatever new call
reuses its pjsua id, so the worker frees them by reference count, at a moment it chose.
"""

from __future__ import annotations

import asyncio
import gc
import io
import weakref

from services.telephony.app import Settings
from services.telephony.worker import MediaWorker
from voicebot.service import Service


class Held:
    """Stands for a Call or port object a timer holds."""


def _worker() -> MediaWorker:
    settings = Settings()
    return MediaWorker(settings, Service("telephony", settings), 0, 0, io.BytesIO())


async def test_a_timer_that_ran_frees_what_it_held_without_the_collector() -> None:
    worker = _worker()
    worker.loop = asyncio.get_running_loop()
    fired: list[bool] = []
    held = Held()
    ref = weakref.ref(held)
    gc.disable()
    try:
        worker._later(0.01, lambda obj: fired.append(obj is not None), held)
        del held
        await asyncio.sleep(0.05)
        assert fired == [True]
        assert ref() is None, "held until a garbage collection"
        assert worker._timers == {}
    finally:
        gc.enable()


async def test_a_cancelled_timer_is_forgotten_and_frees_what_it_held() -> None:
    worker = _worker()
    worker.loop = asyncio.get_running_loop()
    held = Held()
    ref = weakref.ref(held)
    gc.disable()
    try:
        handle = worker._later(10, lambda obj: None, held)
        del held
        worker._cancel(handle)
        assert worker._timers == {}
        assert ref() is None
    finally:
        gc.enable()
