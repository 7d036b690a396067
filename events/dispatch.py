"""From a consumed record to the handler that takes it: decode, route, or skip.

A record whose ``event_type`` header names a type the router has no handler for is skipped
before it is decoded (most records on a topic are for other processes); one that cannot be
decoded, breaks the contract, or holds another event type than its header says is
dead-lettered. Everything else becomes a :class:`Pending` item for the delivery, its handler
run behind its provider's guard when it declares one (:mod:`events.breakers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord

from events.breakers import ProviderGuards
from events.codec import Codec
from events.dlq import DeadLetterSink
from events.errors import ContractError, HeaderMismatchError
from events.headers import EVENT_TYPE, header
from events.logs import order_context
from events.model import Event, Message
from events.router import HandlerSpec, Router


@dataclass(frozen=True, slots=True)
class Pending:
    """A decoded record with its handler, ready to be delivered."""

    record: ConsumerRecord
    message: Message[Event]
    handler: HandlerSpec


@dataclass
class ConsumerStats:
    """Counters of one consumer since it started."""

    processed: int = 0
    skipped: int = 0
    retried: int = 0
    deferred: int = 0
    dead_lettered: int = 0
    batches_rolled_back: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    def delivered(self, event_type: str) -> None:
        self.processed += 1
        self.by_type[event_type] = self.by_type.get(event_type, 0) + 1


class Dispatcher:
    """Decodes records and finds their handlers on ``router``; dead-letters the undecodable.
    With ``guards``, a handler that declares a provider runs behind that provider's guard."""

    def __init__(
        self,
        router: Router[Any],
        codec: Codec,
        sink: DeadLetterSink,
        stats: ConsumerStats,
        guards: ProviderGuards | None = None,
    ) -> None:
        self.router = router
        self.codec = codec
        self.sink = sink
        self.stats = stats
        self.guards = guards

    async def prepare(self, record: ConsumerRecord, attempt: int) -> Pending | None:
        """Decode and route a record; None when it is not for this consumer or was
        dead-lettered as undecodable."""
        declared_type = header(record.headers, EVENT_TYPE)
        if declared_type is not None and self.router.get(declared_type) is None:
            self.stats.skipped += 1
            return None
        try:
            message = self.codec.decode(record.value).at(
                (record.topic, record.partition, record.offset)
            )
            if declared_type is not None and declared_type != message.envelope.event_type:
                raise HeaderMismatchError(
                    f"header event_type {declared_type!r} but the value is "
                    f"{message.envelope.event_type!r}"
                )
        except ContractError as exc:
            with order_context(record.key):
                await self.sink.send(record, exc, attempts=attempt, event_type=declared_type)
            self.stats.dead_lettered += 1
            return None
        handler = self.router.get(message.envelope.event_type)
        if handler is None:
            self.stats.skipped += 1
            return None
        if self.guards is not None:
            handler = self.guards.guarded(handler)
        return Pending(record, message, handler)
