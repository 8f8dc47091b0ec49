"""Campaign scripts: one YAML file per campaign in `VOICEBOT_CAMPAIGNS_DIR`, validated on load.

Every service that needs a campaign (dialogue lines, compliance rules, the knowledge base, pacing)
reads the same file through `CampaignBook`, so a rule is never configured twice.
"""

from __future__ import annotations

import re
from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ScriptError(ValueError):
    """A campaign file that cannot be used; the message names the file, line and field."""


class CallingWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: time = time(8, 0)
    end: time = time(21, 0)


class Lines(BaseModel):
    """What the bot says at each step; `{name}`, `{company}`, `{agent}` are filled per call."""

    model_config = ConfigDict(extra="forbid")
    greeting: str
    pitch: str
    invite_questions: str = "Do you have any questions?"
    anything_else: str = "Is there anything else I can help you with?"
    goodbye: str = "Thank you for your time. Goodbye."
    goodbye_not_interested: str = "I understand. Thank you for your time. Goodbye."
    goodbye_opt_out: str = (
        "I understand. I have removed your number from our list and you will not be called again. Goodbye."
    )
    not_understood: str = "Sorry, I didn't catch that. Could you say it again?"
    no_answer_in_kb: str = (
        "I'm sorry, I don't have that information. I can have a colleague call you back about it."
    )
    handoff_callback: str = "Of course. I will ask one of my colleagues to call you back."
    transfer: str = "Of course. I am connecting you with a colleague now, please hold."
    transfer_failed: str = (
        "I'm sorry, no one is available right now. A colleague will call you back as soon as possible."
    )


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_turns: int = Field(12, ge=1)
    max_duration_s: int = Field(300, ge=10)
    ring_timeout_s: int = Field(30, ge=5)


class Pacing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    calls_per_second: float = Field(1.0, gt=0)
    max_concurrent: int = Field(4, ge=1)


class BargeIn(BaseModel):
    """The customer talking over the bot: playback pauses at speech onset; speech that lasts
    `min_speech_ms` cuts the reply, shorter sounds (a backchannel such as "uh-huh", a cough) resume it."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    min_speech_ms: int = Field(700, ge=0, le=5000)
    resume_after_ms: int = Field(250, ge=60, le=3000)  # silence after a short sound that resumes playback


class Voicemail(BaseModel):
    """Answering-machine detection on outbound calls and what to do with a machine."""

    model_config = ConfigDict(extra="forbid")
    detect: bool = False  # the greeting waits for the verdict (up to ~2 s after answer): opt in per campaign
    on_machine: Literal["hangup", "leave_message"] = "hangup"
    message: str = ""  # spoken after the beep when on_machine is leave_message; may use {name} etc.
    max_wait_for_beep_s: float = Field(20.0, gt=0, le=120)


class Recording(BaseModel):
    """Both legs of every call to a WAV file, announced first when `announce` is set."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    announce: str = ""
    retention_days: int = Field(90, ge=1, le=3650)


class Transfer(BaseModel):
    """Hand-over to a human: `agent_uri` is a SIP URI, or an extension (a queue or a person) that the
    telephony node calls through its agent trunk."""

    model_config = ConfigDict(extra="forbid")
    agent_uri: str = Field("", pattern=r"^(sips?:\S+|[A-Za-z0-9._+-]+)?$")
    mode: Literal["blind", "warm"] = "warm"
    ring_timeout_s: int = Field(20, ge=3, le=120)


class Campaign(BaseModel):
    """One campaign: who calls, what the bot says, what it may not say, where answers come from."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    company: str
    agent_name: str = "Alex"
    caller_id: str = Field(pattern=r"^\+[1-9]\d{6,14}$")
    default_timezone: str = "America/New_York"
    calling_window: CallingWindow = CallingWindow()
    knowledge_base: Path
    forbidden_phrases: list[str] = []
    safe_reply: str = "I'm sorry, I can't comment on that. A colleague can follow up with the details."
    lines: Lines
    limits: Limits = Limits()
    pacing: Pacing = Pacing()
    barge_in: BargeIn = BargeIn()
    voicemail: Voicemail = Voicemail()
    recording: Recording = Recording()
    transfer: Transfer = Transfer()
    source: Path = Path()

    @field_validator("forbidden_phrases")
    @classmethod
    def _lower(cls, phrases: list[str]) -> list[str]:
        return [p.strip().lower() for p in phrases if p.strip()]

    @cached_property
    def faq_text(self) -> str:
        return self.knowledge_base.read_text(encoding="utf-8")

    def say(self, line: str, profile: dict[str, str] | None = None) -> str:
        """A script line with the contact's fields filled in; unknown fields stay generic."""
        values = {"company": self.company, "agent": self.agent_name, "name": "", **(profile or {})}
        text = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), ""), line)
        return re.sub(r"\s+([,.!?])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()


def _line_of(text: str, loc: tuple[str | int, ...]) -> int:
    """Best-effort line number of a field path in the YAML source (1-based; 1 when unknown)."""
    try:
        node = yaml.compose(text)
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                node = next(v for k, v in node.value if k.value == part)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                node = node.value[part]
            else:
                break
        return node.start_mark.line + 1
    except (StopIteration, IndexError, yaml.YAMLError, AttributeError):
        return 1


def load_campaign(path: Path) -> Campaign:
    """Parse and validate one campaign file; paths inside it are relative to the file."""
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScriptError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScriptError(f"{path}:1: a campaign file must be a mapping")
    try:
        campaign = Campaign.model_validate({**data, "source": path})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc)
            problems.append(f"{path}:{_line_of(text, loc)}: {field}: {err['msg']}")
        raise ScriptError("\n".join(problems)) from None
    kb = campaign.knowledge_base
    campaign.knowledge_base = kb if kb.is_absolute() else (path.parent / kb).resolve()
    if not campaign.knowledge_base.is_file():
        line = _line_of(text, ("knowledge_base",))
        raise ScriptError(f"{path}:{line}: knowledge_base: file not found: {campaign.knowledge_base}")
    return campaign


class CampaignBook:
    """All campaigns of a folder, by id; loaded once, every file validated (fail fast at start)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_id: dict[str, Campaign] = {}
        for path in sorted(folder.glob("*.yaml")):
            campaign = load_campaign(path)
            if campaign.id in self._by_id:
                other = self._by_id[campaign.id].source
                raise ScriptError(f"{path}: campaign id {campaign.id!r} also in {other}")
            self._by_id[campaign.id] = campaign

    def get(self, campaign_id: str) -> Campaign:
        try:
            return self._by_id[campaign_id]
        except KeyError:
            raise KeyError(f"unknown campaign {campaign_id!r} (not in {self.folder})") from None

    def __iter__(self):
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
