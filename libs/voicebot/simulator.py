"""Simulated customers: SIP user agents that answer the bot's calls and speak scripted lines.

`python -m voicebot.simulator --personas demo/personas.yaml --port 5070 --log var/sim.jsonl`
One pjsua2 process; the dialled number (request URI user) picks the persona, and the caller ID (From
user, masked like any number) is logged with "ringing". A persona speaks its
next line (espeak-ng) only after the bot has spoken and then been quiet for ~0.8 s, like a person
waiting for their turn; after its last line it waits for the bot to hang up. Every event is one JSON
line in the log, which tests and the demo read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pjsua2 as pj
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voicebot import audio, corpus, sip
from voicebot.observability import mask_phone

VOICE_DBFS = -45.0  # received audio louder than this is the bot speaking
ONSET_LEVEL = 300  # sample amplitude (about -40 dBFS) where a rendered line's speech begins


class Line(BaseModel):
    """One thing the customer does: say words, or press keys (`dtmf`, sent by `method`).

    `over_bot_after_s`: say it while the bot is talking, that long after the bot's audio started
    (a barge-in, or a backchannel such as "uh-huh"), instead of waiting for the bot to finish.
    """

    model_config = ConfigDict(extra="forbid")
    say: str = ""
    dtmf: str = Field("", pattern=r"^[0-9*#A-D]*$")
    method: Literal["rfc2833", "info"] = "rfc2833"
    over_bot_after_s: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> Line:
        if bool(self.say) == bool(self.dtmf):
            raise ValueError("a line has either `say` or `dtmf`")
        return self


class Persona(BaseModel):
    """How one simulated customer behaves; a line given as plain text is `say`."""

    model_config = ConfigDict(extra="forbid")
    name: str
    answer: bool = True
    answer_delay_s: float = Field(1.0, ge=0)  # ring time; for answer=false: ring, then 480 (0: ring forever)
    lines: list[Line] = []
    greet: str = ""  # said as soon as the call is answered, as people do ("Hello?"), or a recorded greeting
    greet_beep_hz: float = Field(0.0, ge=0, le=4000)  # an answering machine's record tone after `greet`
    reply_after_silence_s: float = Field(0.8, gt=0)
    speak_first_after_s: float = Field(8.0, gt=0)  # say the first line anyway if the bot stays silent
    hangup_after_s: float = Field(15.0, gt=0)  # after the last line, hang up if the bot has not
    patience_s: float = Field(30.0, gt=0)  # hang up when the line has been dead this long

    @field_validator("lines", mode="before")
    @classmethod
    def _texts(cls, lines: list[Any]) -> list[Any]:
        return [{"say": line} if isinstance(line, str) else line for line in lines or []]


def load_personas(path: Path) -> dict[str, Persona]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(phone): Persona.model_validate(p) for phone, p in data.items()}


def speak(text: str, voice: str = "en-us", wpm: int = 165) -> bytes:
    """espeak-ng speech as 16 kHz 16-bit mono PCM."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", tmp.name, text], check=True, capture_output=True
        )
        with wave.open(tmp.name, "rb") as w:
            rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    return audio.resample_pcm16(pcm, rate, sip.SAMPLE_RATE)


class EventLog:
    def __init__(self, path: Path | None) -> None:
        self.file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = path.open("a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        record = {"event": event, "at_us": fields.pop("at_us", None) or sip.now_us(), **fields}
        line = json.dumps(record)
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()
        else:
            print(line, flush=True)


class CustomerCall(pj.Call):
    def __init__(self, sim: Simulator, account: pj.Account, pj_call_id: int) -> None:
        super().__init__(account, pj_call_id)
        self.sim = sim
        self.talk: Conversation | None = None

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            if self.talk:
                self.talk.on_state()
        except Exception as exc:
            print(f"simulator: call state error: {exc!r}", file=sys.stderr)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        try:
            if self.talk:
                self.talk.on_media()
        except Exception as exc:
            print(f"simulator: media state error: {exc!r}", file=sys.stderr)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        if self.talk:
            self.talk.log("dtmf_received", digit=prm.digit)

    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        """The bot hands us to an agent (REFER): accept; pjsua calls the agent on our behalf."""
        if self.talk:
            self.talk.log("transfer_requested", to_user=sip.uri_user(prm.dstUri))


@dataclass
class Conversation:
    """One simulated customer on one call."""

    sim: Simulator
    call: CustomerCall
    persona: Persona
    phone: str
    seq: int
    caller: str = ""
    summary: str = ""  # a transferring bot's X-Voicebot-Summary (this persona plays the agent)
    port: sip.FramePort | None = None
    next_line: int = 0
    speaking: bool = False
    bot_talking: bool = False
    bot_ever: bool = False
    last_voice_us: int = 0
    last_line_end_us: int = 0
    answered_us: int = 0
    hung_up_by_me: bool = False
    ended: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    ticker: asyncio.Task[None] | None = None

    def log(self, event: str, **fields: Any) -> None:
        self.sim.log.write(
            event, call=self.seq, persona=self.persona.name, phone=mask_phone(self.phone), **fields
        )

    def start(self) -> None:
        loop = self.sim.loop
        self.call.answer(sip.call_op(180))
        extra = {"summary": self.summary} if self.summary else {}
        self.log("ringing", from_user=mask_phone(self.caller), **extra)
        if self.persona.answer:
            self.timers.append(loop.call_later(self.persona.answer_delay_s, self._answer))
        elif self.persona.answer_delay_s > 0:
            self.timers.append(loop.call_later(self.persona.answer_delay_s, self._reject))

    def _answer(self) -> None:
        if not self.ended:
            self.call.answer(sip.call_op(200))

    def _reject(self) -> None:
        if not self.ended:
            self.call.answer(sip.call_op(480, "Temporarily Unavailable"))

    def on_state(self) -> None:
        ci = self.call.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and not self.answered_us:
            self.answered_us = sip.now_us()
            self.log("answered")
            self.ticker = self.sim.loop.create_task(self._tick())
            if self.persona.greet:
                self.timers.append(self.sim.loop.call_later(0.3, self._greet))
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            self.ended = True
            for t in self.timers:
                t.cancel()
            if self.ticker:
                self.ticker.cancel()
            if self.port:
                self.port.close()
            if self.bot_talking:
                self.log("bot_audio_ended", at_us=self.last_voice_us)
            by = "customer" if self.hung_up_by_me else ("bot" if self.answered_us else "")
            self.log(
                "call_ended",
                sip_code=int(ci.lastStatusCode),
                reason=ci.lastReason,
                hangup_by=by,
                lines_spoken=self.next_line,
            )
            self.sim.forget(self)

    def on_media(self) -> None:
        if self.port is not None or self.ended:
            return
        self.port = sip.FramePort(self.sim.loop, f"cust-{self.seq}", self._on_sent)
        self.port.connect(self.call)
        self.port.send(True)  # a phone always sends (silence too)

    def hear(self) -> None:
        """What the bot sent since the last tick (frames keep their arrival times)."""
        if self.port is not None:
            for pcm, at_us in self.port.take():
                self._on_frame(pcm, at_us)

    def _on_frame(self, pcm: bytes, at_us: int) -> None:
        if self.ended or audio.rms_dbfs(pcm) < VOICE_DBFS:
            return
        if not self.bot_talking:
            self.bot_talking = True
            self.bot_ever = True
            self.log("bot_audio_started", at_us=at_us - sip.FRAME_MS * 1000)
            self._plan_over_bot()
        self.last_voice_us = at_us

    def _plan_over_bot(self) -> None:
        """The next line is meant to be said over the bot: schedule it from the bot's first audio."""
        if self.speaking or self.next_line >= len(self.persona.lines):
            return
        after = self.persona.lines[self.next_line].over_bot_after_s
        if after is not None:
            self.timers.append(self.sim.loop.call_later(after, self._say_over, self.next_line))

    def _say_over(self, idx: int) -> None:
        if not self.ended and self.bot_talking and not self.speaking and self.next_line == idx:
            self._say_next()

    def _greet(self) -> None:
        if not self.ended and not self.speaking and self.port is not None:
            beep_hz = self.persona.greet_beep_hz
            tail = corpus.silence(300) + corpus.tone(beep_hz, 450) if beep_hz else b""
            self._queue_speech(self.persona.greet, -1, tail)

    async def _tick(self) -> None:
        """Turn-taking: watch for the bot's silence, and the persona's own timeouts."""
        silence_us = int(self.persona.reply_after_silence_s * 1e6)
        while not self.ended:
            await asyncio.sleep(0.05)
            now = sip.now_us()
            # the bot's silence counts from its last sound or the end of my own line, whichever is later:
            # a bot that paused while I said "uh-huh" has not finished its turn
            if (
                self.bot_talking
                and not self.speaking
                and now - max(self.last_voice_us, self.last_line_end_us) >= silence_us
            ):
                self.bot_talking = False
                self.log("bot_audio_ended", at_us=self.last_voice_us)
                if not self.speaking:
                    self._say_next()
            elif (
                not self.bot_ever
                and not self.speaking
                and self.next_line == 0
                and now - self.answered_us >= self.persona.speak_first_after_s * 1e6
            ):
                self._say_next()
            elif (
                not self.speaking
                and not self.bot_talking
                and now - max(self.last_voice_us, self.last_line_end_us, self.answered_us)
                >= self.persona.patience_s * 1e6
            ):
                self.log("gave_up")
                self.hang_up()
                return

    def _say_next(self) -> None:
        if self.next_line >= len(self.persona.lines) or self.port is None:
            return
        idx = self.next_line
        self.next_line += 1
        line = self.persona.lines[idx]
        if line.dtmf:
            self._press(idx, line)
        else:
            self._queue_speech(line.say, idx)

    def _queue_speech(self, text: str, idx: int, tail: bytes = b"") -> None:
        """Line `idx` (-1: the greeting on answer) goes out frame by frame; `_on_sent` logs it."""
        assert self.port is not None
        out = [sip.OutFrame(f) for f in audio.frames(self.sim.voice(text) + tail, sip.FRAME_BYTES)]
        out[0].tag = ("line_started", idx, text)
        out[-1].tag = ("line_both" if len(out) == 1 else "line_ended", idx, text)
        self.speaking = True
        self.port.queue.extend(out)

    def _press(self, idx: int, line: Line) -> None:
        prm = pj.CallSendDtmfParam()
        prm.digits = line.dtmf
        prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO if line.method == "info" else pj.PJSUA_DTMF_METHOD_RFC2833
        self.call.sendDtmf(prm)
        now = sip.now_us()
        self.log("dtmf_sent", line=idx, digits=line.dtmf, method=line.method, at_us=now)
        self._line_done(now)

    def _on_sent(self, tag: tuple[str, int, str], at_us: int) -> None:
        kind, idx, text = tag
        if kind in ("line_started", "line_both"):
            self.log("line_started", line=idx, text=text, at_us=at_us)
        if kind in ("line_ended", "line_both"):
            self.speaking = False
            self.log("line_ended", line=idx, text=text, at_us=at_us + sip.FRAME_MS * 1000)
            self._line_done(at_us)

    def _line_done(self, at_us: int) -> None:
        self.last_line_end_us = at_us
        if self.next_line >= len(self.persona.lines):
            self.timers.append(self.sim.loop.call_later(self.persona.hangup_after_s, self.hang_up))

    def hang_up(self) -> None:
        if self.ended:
            return
        self.hung_up_by_me = True
        with contextlib.suppress(Exception):
            self.call.hangup(sip.call_op())


class CustomerAccount(pj.Account):
    def __init__(self, sim: Simulator) -> None:
        super().__init__()
        self.sim = sim

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        try:
            self.sim.on_incoming(prm)
        except Exception as exc:
            print(f"simulator: incoming call error: {exc!r}", file=sys.stderr)


class Simulator:
    def __init__(
        self, personas: dict[str, Persona], port: int, log: EventLog, host: str = "127.0.0.1"
    ) -> None:
        self.personas = personas
        self.port = port
        self.host = host
        self.log = log
        self.talks: dict[int, Conversation] = {}
        self.retired: list[Any] = []
        self._voices: dict[str, bytes] = {}
        self._seq = 0
        self.loop = asyncio.new_event_loop()

    def voice(self, text: str) -> bytes:
        """The line's speech from its first audible sample, so "line_started" is the speech onset."""
        if text not in self._voices:
            pcm = speak(text)
            loud = np.flatnonzero(np.abs(np.frombuffer(pcm, dtype="<i2")) > ONSET_LEVEL)
            self._voices[text] = pcm[int(loud[0]) * 2 :] if loud.size else pcm
        return self._voices[text]

    def on_incoming(self, prm: pj.OnIncomingCallParam) -> None:
        call = CustomerCall(self, self.account, prm.callId)
        phone = sip.request_user(prm.rdata.wholeMsg)
        persona = self.personas.get(phone)
        if persona is None:
            self.log.write("unknown_number", phone=mask_phone(phone))
            call.answer(sip.call_op(404, "Not Found"))
            self.retired.append(call)
            return
        self._seq += 1
        ci = call.getInfo()
        summary = sip.header(prm.rdata.wholeMsg, "X-Voicebot-Summary")
        caller = sip.uri_user(ci.remoteUri)
        talk = Conversation(self, call, persona, phone, self._seq, caller=caller, summary=summary)
        call.talk = talk
        self.talks[talk.seq] = talk
        talk.start()

    def _hear(self) -> None:
        for talk in list(self.talks.values()):
            talk.hear()

    def forget(self, talk: Conversation) -> None:
        self.talks.pop(talk.seq, None)
        self.retired.append((talk.call, talk.port))  # freed at exit, never inside a callback

    async def run(self, stop: asyncio.Event) -> None:
        for persona in self.personas.values():  # render once, before the first call rings
            for text in [persona.greet, *(line.say for line in persona.lines)]:
                if text:
                    self.voice(text)
        endpoint = sip.create_endpoint(self.port, host=self.host, max_calls=4)
        self.account = CustomerAccount(self)
        self.account.create(sip.account_config(self.host, endpoint.port, user="customer"))
        pump = asyncio.create_task(sip.pump_events(endpoint.ep, on_tick=self._hear))
        self.log.write("simulator_ready", port=endpoint.port, personas=len(self.personas))
        try:
            await stop.wait()
        finally:
            for talk in list(self.talks.values()):
                talk.hang_up()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await endpoint.close(self._forget_all)

    def _forget_all(self) -> None:
        for talk in list(self.talks.values()):
            talk.ended = True
            for timer in talk.timers:
                timer.cancel()
            if talk.ticker:
                talk.ticker.cancel()
            if talk.port:
                talk.port.close()
            talk.call.talk = None
        self.talks.clear()
        self.retired.clear()
        self.account = None  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voicebot simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=Path, default=Path("demo/personas.yaml"))
    parser.add_argument("--port", type=int, default=5070, help="SIP UDP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log", type=Path, default=None, help="JSON lines event log (default: stdout)")
    args = parser.parse_args(argv)
    sim = Simulator(load_personas(args.personas), args.port, EventLog(args.log), args.host)
    loop = sim.loop
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(sim.run(stop))
    finally:
        loop.close()
    sip.exit_now(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
