"""The Python API: place orders, answer approvals, inspect and redrive dead letters.

    async with ChoreoClient() as choreo:
        placed = await choreo.place_order(order)            # an OrderPlaced
        await choreo.approve(placed.saga_key, by="ops-ann")

Messages are published straight to Kafka (idempotent producer, acks=all). An order's
correlation id is its order id, so every message of an order's flow shares it. Personal fields
(``order.placed``, ``return.requested``) are sealed under the customer's data key before they
leave (:func:`contracts.personal.seal_personal_data`; the keys are in PostgreSQL, reached on
the first event to seal, so commands that only read Kafka need no database). The building
blocks are shared with the HTTP API: decisions from :mod:`contracts.decisions`, publishing from
:func:`events.producer.publish_first`, dead letters from :mod:`events.redrive`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from types import TracebackType

from contracts.catalog import CATALOG, OrderPlaced
from contracts.decisions import approval, rejection
from contracts.personal import seal_personal_data
from events import personal_data
from events.codec import Codec
from events.database import Database
from events.model import Event, Message
from events.producer import EventProducer, publish_first
from events.redrive import DeadLetterEntry, DeadLetterQueue
from events.schemas import SchemaRegistry
from events.settings import Settings, get_settings

PRODUCER = "cli"


class ChoreoClient:
    """Talks to a running Choreo through Kafka. Async context manager."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.codec = Codec(SchemaRegistry.load(self.settings.schemas_dir), CATALOG)
        self.producer = EventProducer(self.settings, self.codec, client_id="choreo-client")
        self.dlq = DeadLetterQueue(self.settings, self.producer)
        self.keys_db = Database(self.settings, max_size=2)
        self._keys_ready = False
        self._keys_lock = asyncio.Lock()

    async def __aenter__(self) -> ChoreoClient:
        await self.producer.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.producer.stop()
        await self.keys_db.stop()

    async def sealed(self, event: Event) -> Event:
        """``event`` with its personal fields sealed, if its type carries any."""
        if "personal_data" not in type(event).model_fields:
            return event
        async with self._keys_lock:  # a burst of orders makes the key table once
            if not self._keys_ready:
                await self.keys_db.start()
                async with self.keys_db.pool.acquire() as conn:
                    await personal_data.create_tables(conn, self.settings)
                self._keys_ready = True
        async with self.keys_db.pool.acquire() as conn:
            keyring = personal_data.PostgresKeyring(conn, personal_data.keys_schema(self.settings))
            return await seal_personal_data(event, keyring)

    async def place_order(self, order: OrderPlaced, order_id: str | None = None) -> Message[Event]:
        """Publish ``order.placed`` (its personal fields sealed); the order id is generated
        unless given."""
        return await publish_first(
            self.producer,
            await self.sealed(order),
            saga_type="order",
            saga_key=order_id or new_order_id(),
            by=PRODUCER,
        )

    async def approve(
        self,
        order_id: str,
        *,
        by: str,
        reason: str | None = None,
        trace_parent: str | None = None,
    ) -> Message[Event]:
        """Publish ``order.approved`` for an order waiting for approval.

        ``trace_parent`` (the ``traceparent`` of the order's ``order.placed``, e.g. from
        :meth:`projections.queries.Queries.traceparent`) keeps the approval in the order's trace.
        """
        event = approval(by=by, reason=reason)
        return await publish_first(
            self.producer,
            event,
            saga_type="order",
            saga_key=order_id,
            by=PRODUCER,
            trace_parent=trace_parent,
        )

    async def reject(
        self, order_id: str, *, by: str, reason: str, trace_parent: str | None = None
    ) -> Message[Event]:
        """Publish ``order.rejected`` for an order waiting for approval (see :meth:`approve`)."""
        event = rejection(by=by, reason=reason)
        return await publish_first(
            self.producer,
            event,
            saga_type="order",
            saga_key=order_id,
            by=PRODUCER,
            trace_parent=trace_parent,
        )

    async def start_saga(
        self, saga_type: str, event: Event, key: str | None = None
    ) -> Message[Event]:
        """Publish the event that starts a saga of ``saga_type`` (e.g. ``return.requested``);
        the key is generated (``<first three letters of the type>-`` + 12 hex) unless given.
        Personal fields are sealed."""
        return await publish_first(
            self.producer,
            await self.sealed(event),
            saga_type=saga_type,
            saga_key=key or new_key(saga_type),
            by=PRODUCER,
        )

    async def answer(
        self, saga_type: str, key: str, event: Event, *, trace_parent: str | None = None
    ) -> Message[Event]:
        """Publish a person's answer (e.g. ``return.approved``) to the saga ``key``."""
        return await publish_first(
            self.producer,
            event,
            saga_type=saga_type,
            saga_key=key,
            by=PRODUCER,
            trace_parent=trace_parent,
        )

    async def dead_letters(self, *, include_redriven: bool = False) -> list[DeadLetterEntry]:
        """Every dead letter in the DLQ topic, oldest first."""
        return await self.dlq.entries(include_redriven=include_redriven)

    async def redrive(self, entry_ids: Sequence[str]) -> list[DeadLetterEntry]:
        """Publish the original messages again to their source topics, unchanged, and mark
        them redriven. Consumers that handled them before skip them (same event id)."""
        return await self.dlq.redrive(entry_ids, by=PRODUCER)


def new_order_id() -> str:
    """A short, unique, URL-safe order id: ``ord-`` + 12 hex digits."""
    return new_key("order")


def new_key(saga_type: str) -> str:
    """A short, unique, URL-safe saga key: ``ord-``, ``ret-``... + 12 hex digits."""
    return f"{saga_type[:3]}-{uuid.uuid4().hex[:12]}"
