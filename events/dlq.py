"""Dead letters: a message that could not be processed, kept with why, where and its bytes.

A dead-letter record's value is JSON (readable by any tool); the original key, value and
headers are kept byte for byte (base64) so the message can be redriven unchanged. Every
consumer (the services' and the projector's) sends its dead letters through a
:class:`DeadLetterSink`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from pydantic import BaseModel, ConfigDict

from events import metrics
from events.producer import EventProducer, OutgoingRecord

log = logging.getLogger("choreo.runtime")


class DeadLetter(BaseModel):
    """What the dead-letter topic records about one failed message."""

    model_config = ConfigDict(frozen=True)

    reason: str
    error_type: str
    consumer: str
    source_topic: str
    source_partition: int
    source_offset: int
    attempts: int
    dead_at: datetime
    event_type: str | None = None
    event_id: str | None = None
    key_b64: str | None = None
    value_b64: str | None = None
    headers: list[tuple[str, str]] = []
    """Original headers, values base64-encoded."""

    @property
    def original_value(self) -> bytes | None:
        return None if self.value_b64 is None else base64.b64decode(self.value_b64)

    @property
    def original_key(self) -> bytes | None:
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)

    @property
    def order_id(self) -> str | None:
        """The original key as text: the saga key of the message (None without one)."""
        key = self.original_key
        return key.decode(errors="replace") if key else None

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, base64.b64decode(v)) for k, v in self.headers]

    @classmethod
    def from_json(cls, data: bytes) -> DeadLetter:
        return cls.model_validate(orjson.loads(data))

    def to_record(self, dlq_topic: str) -> OutgoingRecord:
        headers: list[tuple[str, bytes]] = [
            ("dlq_reason", self.reason[:1000].encode()),
            ("dlq_consumer", self.consumer.encode()),
            ("content-type", b"application/json"),
        ]
        if self.event_type:
            headers.append(("event_type", self.event_type.encode()))
        return OutgoingRecord(
            topic=dlq_topic,
            key=self.original_key or b"",
            value=orjson.dumps(self.model_dump(mode="json")),
            headers=tuple(headers),
            event_type=self.event_type or "",
        )


def dead_letter(
    *,
    error: BaseException,
    consumer: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    attempts: int,
    event_type: str | None = None,
    event_id: str | None = None,
) -> DeadLetter:
    """Describe a failed message for the dead-letter topic."""
    fields: dict[str, Any] = {
        "reason": str(error) or type(error).__name__,
        "error_type": type(error).__name__,
        "consumer": consumer,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "attempts": attempts,
        "dead_at": datetime.now(UTC),
        "event_type": event_type,
        "event_id": event_id,
        "key_b64": None if key is None else base64.b64encode(key).decode(),
        "value_b64": None if value is None else base64.b64encode(value).decode(),
        "headers": [(k, base64.b64encode(v).decode()) for k, v in headers or ()],
    }
    return DeadLetter.model_validate(fields)


def letter_for(
    record: ConsumerRecord,
    error: BaseException,
    *,
    consumer: str,
    attempts: int,
    event_type: str | None = None,
    event_id: str | None = None,
) -> DeadLetter:
    """The dead letter of a consumed record that ``consumer`` gave up on."""
    return dead_letter(
        error=error,
        consumer=consumer,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=record.headers,
        attempts=attempts,
        event_type=event_type,
        event_id=event_id,
    )


class DeadLetterSink:
    """Where a consumer's dead letters go: builds the letter, logs it, sends it to the
    dead-letter topic and counts it (``choreo.dlq.messages``).

    Args:
        name: the process, for the log line.
        consumer: the consumer group, recorded in the letter and the metric.
        producer: sends the letters.
        topic: the dead-letter topic.
    """

    def __init__(self, name: str, consumer: str, producer: EventProducer, topic: str) -> None:
        self.name = name
        self.consumer = consumer
        self.producer = producer
        self.topic = topic

    async def send(
        self,
        record: ConsumerRecord,
        error: BaseException,
        *,
        attempts: int,
        event_type: str | None = None,
        event_id: str | None = None,
    ) -> DeadLetter:
        """Dead-letter ``record``, which failed with ``error`` after ``attempts``."""
        letter = letter_for(
            record,
            error,
            consumer=self.consumer,
            attempts=attempts,
            event_type=event_type,
            event_id=event_id,
        )
        log.error(
            "%s: %s@%d/%d dead-lettered after %d attempt(s): %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            letter.reason,
        )
        await self.producer.send_records([letter.to_record(self.topic)])
        metrics.dead_letters().add(1, {"consumer": self.consumer, "error_type": letter.error_type})
        return letter
