"""The envelope every message carries, the base class of event payloads, and the pair of both.

The Avro value of every message is one record: an ``envelope`` field followed by the payload
fields. In code the two halves stay apart: handlers get a :class:`Message` and return bare
payloads (:class:`Event`); the runtime wraps what they return in envelopes derived from the cause
(same saga and correlation id, causation = the cause's event id).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

_frozen_now: ContextVar[datetime | None] = ContextVar("choreo_frozen_now", default=None)
"""The instant :func:`utc_now` returns inside :func:`frozen_clock`; None: the real clock."""


def _millis(instant: datetime) -> datetime:
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def as_utc(moment: datetime) -> datetime:
    """``moment``, taken as UTC when it has no zone (what a person types into a form or a
    query string)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def utc_now() -> datetime:
    """Now, in UTC, truncated to milliseconds (the precision of Avro timestamp-millis).

    Inside :func:`frozen_clock` it is the frozen instant instead: handlers read the time only
    through this function, so what they record is reproducible by a replay.
    """
    frozen = _frozen_now.get()
    return frozen if frozen is not None else _millis(datetime.now(UTC))


@contextmanager
def frozen_clock(at: datetime | None = None) -> Iterator[datetime]:
    """Make :func:`utc_now` return one instant until the block ends: ``at``, or now.

    A delivery processes each message at one instant, so that what the handler records and the
    envelopes of what it emits carry the same time; a replay freezes the clock at the instant
    the log shows for the message, and the handler computes the same values again (as a
    Temporal workflow sees its recorded time). Nested without ``at``, the outer instant stays.
    The clock is a context variable: concurrent tasks each have their own.
    """
    instant = utc_now() if at is None else _millis(at.astimezone(UTC))
    token = _frozen_now.set(instant)
    try:
        yield instant
    finally:
        _frozen_now.reset(token)


class Envelope(BaseModel):
    """Metadata of one message, identical in shape for every event type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(description="Unique id of this message; the dedupe key.")
    event_type: str = Field(description="Catalog name, e.g. `order.placed`.")
    saga_type: str = Field(
        min_length=1, description="The saga type (definition name) this message belongs to."
    )
    saga_key: str = Field(
        min_length=1, description="The saga this message belongs to (e.g. an order id); Kafka key."
    )
    correlation_id: str = Field(description="Shared by every message of one business flow.")
    causation_id: str | None = Field(
        default=None, description="event_id of the message that caused this one."
    )
    occurred_at: datetime = Field(description="When the fact happened (UTC, milliseconds).")
    producer: str = Field(description="Name of the process that produced the message.")
    schema_version: int = Field(ge=1, description="Version of the schema the writer used.")


class Event(BaseModel):
    """Base of every event and command payload in the catalog.

    Subclasses set :attr:`event_type` (the catalog name) and :attr:`schema_version` (the newest
    ``schemas/<event_type>/v<N>.avsc`` the model matches).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @classmethod
    def domain(cls) -> str:
        """The part of the event type before the dot; names the topic the event lives on."""
        return cls.event_type.split(".", 1)[0]

    def summary(self) -> str:
        """One line for the audit trail, without personal data: the event type and its
        ``reason`` if it has one. An event that can say more in a line overrides it."""
        # The field from the instance's values: getattr of a field a model lacks goes through
        # pydantic's __getattr__ and an AttributeError, 2 µs an event logged or replayed.
        reason = self.__dict__.get("reason")
        return self.event_type + (f": {reason}" if reason else "")


E = TypeVar("E", bound=Event, covariant=True)
T = TypeVar("T", bound=Event)


Position = tuple[str, int, int]
"""Where a record is in the log: (topic, partition, offset)."""


@dataclass(frozen=True, slots=True)
class Message(Generic[E]):
    """One decoded message: its envelope and its typed payload, and where it was read from
    (None for a message not read from the log)."""

    envelope: Envelope
    event: E
    position: Position | None = None

    def at(self, position: Position) -> Message[E]:
        """This message, read from ``position``."""
        return Message(self.envelope, self.event, position)

    @property
    def saga_key(self) -> str:
        """The key of the saga this message belongs to (also its Kafka key)."""
        return self.envelope.saga_key

    @staticmethod
    def first(
        event: T,
        *,
        saga_type: str,
        saga_key: str,
        producer: str,
        correlation_id: str | None = None,
    ) -> Message[T]:
        """A message that starts a flow (no cause): e.g. an `order.placed` from the CLI, or a
        person's answer to a running saga (its type and key name the saga)."""
        event_id = uuid.uuid4()
        return Message(
            Envelope(
                event_id=event_id,
                event_type=event.event_type,
                saga_type=saga_type,
                saga_key=saga_key,
                correlation_id=correlation_id or str(event_id),
                causation_id=None,
                occurred_at=utc_now(),
                producer=producer,
                schema_version=event.schema_version,
            ),
            event,
        )

    def caused(self, event: Event, *, producer: str) -> Message[Event]:
        """A message caused by this one: same saga and correlation, causation = this id."""
        return Message(
            Envelope(
                event_id=uuid.uuid4(),
                event_type=event.event_type,
                saga_type=self.envelope.saga_type,
                saga_key=self.envelope.saga_key,
                correlation_id=self.envelope.correlation_id,
                causation_id=str(self.envelope.event_id),
                occurred_at=utc_now(),
                producer=producer,
                schema_version=event.schema_version,
            ),
            event,
        )
