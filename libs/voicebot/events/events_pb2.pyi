from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Contact(_message.Message):
    __slots__ = ("contact_id", "phone_e164", "name", "timezone", "profile")
    class ProfileEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    PHONE_E164_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    contact_id: str
    phone_e164: str
    name: str
    timezone: str
    profile: _containers.ScalarMap[str, str]
    def __init__(self, contact_id: _Optional[str] = ..., phone_e164: _Optional[str] = ..., name: _Optional[str] = ..., timezone: _Optional[str] = ..., profile: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DialRequest(_message.Message):
    __slots__ = ("contact", "attempt", "caller_id")
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CALLER_ID_FIELD_NUMBER: _ClassVar[int]
    contact: Contact
    attempt: int
    caller_id: str
    def __init__(self, contact: _Optional[_Union[Contact, _Mapping]] = ..., attempt: _Optional[int] = ..., caller_id: _Optional[str] = ...) -> None: ...

class DialCommand(_message.Message):
    __slots__ = ("contact", "attempt", "decision_id", "caller_id")
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_ID_FIELD_NUMBER: _ClassVar[int]
    contact: Contact
    attempt: int
    decision_id: str
    caller_id: str
    def __init__(self, contact: _Optional[_Union[Contact, _Mapping]] = ..., attempt: _Optional[int] = ..., decision_id: _Optional[str] = ..., caller_id: _Optional[str] = ...) -> None: ...

class ComplianceDecision(_message.Message):
    __slots__ = ("decision_id", "subject", "allowed", "rule", "reason", "ruleset_version", "contact", "attempt", "retry_at_us", "turn_id")
    class Subject(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SUBJECT_UNSPECIFIED: _ClassVar[ComplianceDecision.Subject]
        DIAL: _ClassVar[ComplianceDecision.Subject]
        REPLY: _ClassVar[ComplianceDecision.Subject]
    SUBJECT_UNSPECIFIED: ComplianceDecision.Subject
    DIAL: ComplianceDecision.Subject
    REPLY: ComplianceDecision.Subject
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULESET_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RETRY_AT_US_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    subject: ComplianceDecision.Subject
    allowed: bool
    rule: str
    reason: str
    ruleset_version: str
    contact: Contact
    attempt: int
    retry_at_us: int
    turn_id: str
    def __init__(self, decision_id: _Optional[str] = ..., subject: _Optional[_Union[ComplianceDecision.Subject, str]] = ..., allowed: _Optional[bool] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., ruleset_version: _Optional[str] = ..., contact: _Optional[_Union[Contact, _Mapping]] = ..., attempt: _Optional[int] = ..., retry_at_us: _Optional[int] = ..., turn_id: _Optional[str] = ...) -> None: ...

class CallLifecycle(_message.Message):
    __slots__ = ("kind", "direction", "contact", "sip_code", "sip_reason", "sample_rate", "turn_id", "answered", "duration_s", "hangup_by", "attempt", "amd", "amd_reason", "dtmf", "dtmf_method", "played_ms", "interrupted", "transfer_target", "transfer_mode", "recording_uri", "called_number", "speech_start_us")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[CallLifecycle.Kind]
        DIALING: _ClassVar[CallLifecycle.Kind]
        RINGING: _ClassVar[CallLifecycle.Kind]
        ANSWERED: _ClassVar[CallLifecycle.Kind]
        AMD_VERDICT: _ClassVar[CallLifecycle.Kind]
        BRIDGED: _ClassVar[CallLifecycle.Kind]
        TRANSFERRED: _ClassVar[CallLifecycle.Kind]
        ENDED: _ClassVar[CallLifecycle.Kind]
        PLAYBACK_STARTED: _ClassVar[CallLifecycle.Kind]
        PLAYBACK_FINISHED: _ClassVar[CallLifecycle.Kind]
        BARGE_IN: _ClassVar[CallLifecycle.Kind]
        DTMF: _ClassVar[CallLifecycle.Kind]
        BEEP: _ClassVar[CallLifecycle.Kind]
        TRANSFER_FAILED: _ClassVar[CallLifecycle.Kind]
        RECORDING_READY: _ClassVar[CallLifecycle.Kind]
        SPEECH_STARTED: _ClassVar[CallLifecycle.Kind]
    KIND_UNSPECIFIED: CallLifecycle.Kind
    DIALING: CallLifecycle.Kind
    RINGING: CallLifecycle.Kind
    ANSWERED: CallLifecycle.Kind
    AMD_VERDICT: CallLifecycle.Kind
    BRIDGED: CallLifecycle.Kind
    TRANSFERRED: CallLifecycle.Kind
    ENDED: CallLifecycle.Kind
    PLAYBACK_STARTED: CallLifecycle.Kind
    PLAYBACK_FINISHED: CallLifecycle.Kind
    BARGE_IN: CallLifecycle.Kind
    DTMF: CallLifecycle.Kind
    BEEP: CallLifecycle.Kind
    TRANSFER_FAILED: CallLifecycle.Kind
    RECORDING_READY: CallLifecycle.Kind
    SPEECH_STARTED: CallLifecycle.Kind
    class Amd(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AMD_UNSPECIFIED: _ClassVar[CallLifecycle.Amd]
        HUMAN: _ClassVar[CallLifecycle.Amd]
        MACHINE: _ClassVar[CallLifecycle.Amd]
        UNCERTAIN: _ClassVar[CallLifecycle.Amd]
    AMD_UNSPECIFIED: CallLifecycle.Amd
    HUMAN: CallLifecycle.Amd
    MACHINE: CallLifecycle.Amd
    UNCERTAIN: CallLifecycle.Amd
    class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DIRECTION_UNSPECIFIED: _ClassVar[CallLifecycle.Direction]
        OUTBOUND: _ClassVar[CallLifecycle.Direction]
        INBOUND: _ClassVar[CallLifecycle.Direction]
    DIRECTION_UNSPECIFIED: CallLifecycle.Direction
    OUTBOUND: CallLifecycle.Direction
    INBOUND: CallLifecycle.Direction
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    SIP_CODE_FIELD_NUMBER: _ClassVar[int]
    SIP_REASON_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    HANGUP_BY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    AMD_FIELD_NUMBER: _ClassVar[int]
    AMD_REASON_FIELD_NUMBER: _ClassVar[int]
    DTMF_FIELD_NUMBER: _ClassVar[int]
    DTMF_METHOD_FIELD_NUMBER: _ClassVar[int]
    PLAYED_MS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_TARGET_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_MODE_FIELD_NUMBER: _ClassVar[int]
    RECORDING_URI_FIELD_NUMBER: _ClassVar[int]
    CALLED_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SPEECH_START_US_FIELD_NUMBER: _ClassVar[int]
    kind: CallLifecycle.Kind
    direction: CallLifecycle.Direction
    contact: Contact
    sip_code: int
    sip_reason: str
    sample_rate: int
    turn_id: str
    answered: bool
    duration_s: float
    hangup_by: str
    attempt: int
    amd: CallLifecycle.Amd
    amd_reason: str
    dtmf: str
    dtmf_method: str
    played_ms: int
    interrupted: bool
    transfer_target: str
    transfer_mode: str
    recording_uri: str
    called_number: str
    speech_start_us: int
    def __init__(self, kind: _Optional[_Union[CallLifecycle.Kind, str]] = ..., direction: _Optional[_Union[CallLifecycle.Direction, str]] = ..., contact: _Optional[_Union[Contact, _Mapping]] = ..., sip_code: _Optional[int] = ..., sip_reason: _Optional[str] = ..., sample_rate: _Optional[int] = ..., turn_id: _Optional[str] = ..., answered: _Optional[bool] = ..., duration_s: _Optional[float] = ..., hangup_by: _Optional[str] = ..., attempt: _Optional[int] = ..., amd: _Optional[_Union[CallLifecycle.Amd, str]] = ..., amd_reason: _Optional[str] = ..., dtmf: _Optional[str] = ..., dtmf_method: _Optional[str] = ..., played_ms: _Optional[int] = ..., interrupted: _Optional[bool] = ..., transfer_target: _Optional[str] = ..., transfer_mode: _Optional[str] = ..., recording_uri: _Optional[str] = ..., called_number: _Optional[str] = ..., speech_start_us: _Optional[int] = ...) -> None: ...

class AudioUtterance(_message.Message):
    __slots__ = ("utterance_id", "pcm", "sample_rate", "speech_start_us", "speech_end_us", "part", "last_part")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    SPEECH_START_US_FIELD_NUMBER: _ClassVar[int]
    SPEECH_END_US_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    LAST_PART_FIELD_NUMBER: _ClassVar[int]
    utterance_id: str
    pcm: bytes
    sample_rate: int
    speech_start_us: int
    speech_end_us: int
    part: int
    last_part: bool
    def __init__(self, utterance_id: _Optional[str] = ..., pcm: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., speech_start_us: _Optional[int] = ..., speech_end_us: _Optional[int] = ..., part: _Optional[int] = ..., last_part: _Optional[bool] = ...) -> None: ...

class Transcript(_message.Message):
    __slots__ = ("utterance_id", "text", "confidence", "language", "speech_start_us", "speech_end_us", "processing_s")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SPEECH_START_US_FIELD_NUMBER: _ClassVar[int]
    SPEECH_END_US_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_S_FIELD_NUMBER: _ClassVar[int]
    utterance_id: str
    text: str
    confidence: float
    language: str
    speech_start_us: int
    speech_end_us: int
    processing_s: float
    def __init__(self, utterance_id: _Optional[str] = ..., text: _Optional[str] = ..., confidence: _Optional[float] = ..., language: _Optional[str] = ..., speech_start_us: _Optional[int] = ..., speech_end_us: _Optional[int] = ..., processing_s: _Optional[float] = ...) -> None: ...

class ChatTurn(_message.Message):
    __slots__ = ("role", "text")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    role: str
    text: str
    def __init__(self, role: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class LlmRequest(_message.Message):
    __slots__ = ("turn_id", "question", "history", "persona", "max_tokens", "deadline_ms", "knowledge_base", "follow_up", "profile")
    class ProfileEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    PERSONA_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_UP_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    question: str
    history: _containers.RepeatedCompositeFieldContainer[ChatTurn]
    persona: str
    max_tokens: int
    deadline_ms: int
    knowledge_base: str
    follow_up: str
    profile: _containers.ScalarMap[str, str]
    def __init__(self, turn_id: _Optional[str] = ..., question: _Optional[str] = ..., history: _Optional[_Iterable[_Union[ChatTurn, _Mapping]]] = ..., persona: _Optional[str] = ..., max_tokens: _Optional[int] = ..., deadline_ms: _Optional[int] = ..., knowledge_base: _Optional[str] = ..., follow_up: _Optional[str] = ..., profile: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ...) -> None: ...

class BotText(_message.Message):
    __slots__ = ("turn_id", "seq", "text", "final", "end_call", "grounded", "sources", "usage", "sample_rate")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    END_CALL_FIELD_NUMBER: _ClassVar[int]
    GROUNDED_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    seq: int
    text: str
    final: bool
    end_call: bool
    grounded: bool
    sources: _containers.RepeatedScalarFieldContainer[str]
    usage: Usage
    sample_rate: int
    def __init__(self, turn_id: _Optional[str] = ..., seq: _Optional[int] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ..., end_call: _Optional[bool] = ..., grounded: _Optional[bool] = ..., sources: _Optional[_Iterable[str]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., sample_rate: _Optional[int] = ...) -> None: ...

class ApprovedReply(_message.Message):
    __slots__ = ("turn_id", "seq", "text", "final", "end_call", "rewritten", "decision_id", "sample_rate")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    END_CALL_FIELD_NUMBER: _ClassVar[int]
    REWRITTEN_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    seq: int
    text: str
    final: bool
    end_call: bool
    rewritten: bool
    decision_id: str
    sample_rate: int
    def __init__(self, turn_id: _Optional[str] = ..., seq: _Optional[int] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ..., end_call: _Optional[bool] = ..., rewritten: _Optional[bool] = ..., decision_id: _Optional[str] = ..., sample_rate: _Optional[int] = ...) -> None: ...

class TtsAudio(_message.Message):
    __slots__ = ("turn_id", "seq", "pcm", "sample_rate", "final", "end_call", "text")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    END_CALL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    seq: int
    pcm: bytes
    sample_rate: int
    final: bool
    end_call: bool
    text: str
    def __init__(self, turn_id: _Optional[str] = ..., seq: _Optional[int] = ..., pcm: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., final: _Optional[bool] = ..., end_call: _Optional[bool] = ..., text: _Optional[str] = ...) -> None: ...

class CallCommand(_message.Message):
    __slots__ = ("kind", "reason", "target", "immediate", "mode", "summary", "digits", "method", "max_digits", "timeout_ms", "after_turn_id")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[CallCommand.Kind]
        HANGUP: _ClassVar[CallCommand.Kind]
        STOP_PLAYBACK: _ClassVar[CallCommand.Kind]
        TRANSFER: _ClassVar[CallCommand.Kind]
        COLLECT_DTMF: _ClassVar[CallCommand.Kind]
        SEND_DTMF: _ClassVar[CallCommand.Kind]
        ROUTE: _ClassVar[CallCommand.Kind]
    KIND_UNSPECIFIED: CallCommand.Kind
    HANGUP: CallCommand.Kind
    STOP_PLAYBACK: CallCommand.Kind
    TRANSFER: CallCommand.Kind
    COLLECT_DTMF: CallCommand.Kind
    SEND_DTMF: CallCommand.Kind
    ROUTE: CallCommand.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MAX_DIGITS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    AFTER_TURN_ID_FIELD_NUMBER: _ClassVar[int]
    kind: CallCommand.Kind
    reason: str
    target: str
    immediate: bool
    mode: str
    summary: str
    digits: str
    method: str
    max_digits: int
    timeout_ms: int
    after_turn_id: str
    def __init__(self, kind: _Optional[_Union[CallCommand.Kind, str]] = ..., reason: _Optional[str] = ..., target: _Optional[str] = ..., immediate: _Optional[bool] = ..., mode: _Optional[str] = ..., summary: _Optional[str] = ..., digits: _Optional[str] = ..., method: _Optional[str] = ..., max_digits: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., after_turn_id: _Optional[str] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("disposition", "slots", "opt_out", "callback_at_us", "contact", "turns")
    class SlotsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DISPOSITION_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    OPT_OUT_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_AT_US_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    disposition: str
    slots: _containers.ScalarMap[str, str]
    opt_out: bool
    callback_at_us: int
    contact: Contact
    turns: int
    def __init__(self, disposition: _Optional[str] = ..., slots: _Optional[_Mapping[str, str]] = ..., opt_out: _Optional[bool] = ..., callback_at_us: _Optional[int] = ..., contact: _Optional[_Union[Contact, _Mapping]] = ..., turns: _Optional[int] = ...) -> None: ...
