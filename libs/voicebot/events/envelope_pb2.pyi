from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mark(_message.Message):
    __slots__ = ("stage", "at_us")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    AT_US_FIELD_NUMBER: _ClassVar[int]
    stage: str
    at_us: int
    def __init__(self, stage: _Optional[str] = ..., at_us: _Optional[int] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("event_id", "tenant_id", "campaign_id", "call_id", "occurred_at_us", "producer", "schema", "payload", "media_node", "contact_id", "marks")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_US_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MEDIA_NODE_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    MARKS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    tenant_id: str
    campaign_id: str
    call_id: str
    occurred_at_us: int
    producer: str
    schema: str
    payload: bytes
    media_node: str
    contact_id: str
    marks: _containers.RepeatedCompositeFieldContainer[Mark]
    def __init__(self, event_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., call_id: _Optional[str] = ..., occurred_at_us: _Optional[int] = ..., producer: _Optional[str] = ..., schema: _Optional[str] = ..., payload: _Optional[bytes] = ..., media_node: _Optional[str] = ..., contact_id: _Optional[str] = ..., marks: _Optional[_Iterable[_Union[Mark, _Mapping]]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("topic", "partition", "offset", "original", "error", "consumer", "attempts", "failed_at_us")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_US_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    original: bytes
    error: str
    consumer: str
    attempts: int
    failed_at_us: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., original: _Optional[bytes] = ..., error: _Optional[str] = ..., consumer: _Optional[str] = ..., attempts: _Optional[int] = ..., failed_at_us: _Optional[int] = ...) -> None: ...
