"""The Python API: place orders, answer approvals, inspect and redrive dead letters.

    async with ChoreoClient() as choreo:
        placed = await choreo.place_order(order)            # an OrderPlaced
        await choreo.approve(placed.order_id, by="ops-ann")

Messages are published straight to Kafka (idempotent producer, acks=all). An order's
correlation id is its order id, so every message of an order's flow shares it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

import orjson
from opentelemetry import trace

from contracts.catalog import CATALOG, OrderApproved, OrderPlaced, OrderRejected
from events import tracing
from events.codec import Codec
from events.dlq import DeadLetter
from events.errors import ChoreoError
from events.model import Event, Message, utc_now
from events.producer import EventProducer, OutgoingRecord
from events.schemas import SchemaRegistry
from events.settings import Settings, get_settings
from events.topics import read_to_end

PRODUCER = "cli"
REDRIVE_MARKER = "dlq_redrive"
_tracer = trace.get_tracer("choreo.client")


@dataclass(frozen=True)
class DeadLetterEntry:
    """A dead letter as stored in the DLQ topic, with its id (``partition:offset``)."""

    id: str
    letter: DeadLetter
    redriven_at: datetime | None = None


class ChoreoClient:
    """Talks to a running Choreo through Kafka. Async context manager."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.codec = Codec(SchemaRegistry.load(self.settings.schemas_dir), CATALOG)
        self.producer = EventProducer(self.settings, self.codec, client_id="choreo-client")

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

    async def _publish(
        self, event: Event, order_id: str, trace_parent: str | None = None
    ) -> Message[Event]:
        message: Message[Event] = Message.first(
            event, order_id=order_id, producer=PRODUCER, correlation_id=order_id
        )
        with _tracer.start_as_current_span(
            f"{event.event_type} publish",
            context=tracing.extract_traceparent(trace_parent),
            kind=trace.SpanKind.PRODUCER,
            attributes={"choreo.order_id": order_id, "choreo.event_type": event.event_type},
        ):
            await self.producer.publish([message])
        return message

    async def place_order(self, order: OrderPlaced, order_id: str | None = None) -> Message[Event]:
        """Publish ``order.placed``; the order id is generated unless given."""
        return await self._publish(order, order_id or new_order_id())

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
        if not by.strip():
            raise ChoreoError("approve needs the approver's name (--by)")
        return await self._publish(
            OrderApproved(approved_by=by, reason=reason, approved_at=utc_now()),
            order_id,
            trace_parent,
        )

    async def reject(
        self, order_id: str, *, by: str, reason: str, trace_parent: str | None = None
    ) -> Message[Event]:
        """Publish ``order.rejected`` for an order waiting for approval (see :meth:`approve`)."""
        if not by.strip() or not reason.strip():
            raise ChoreoError("reject needs the approver's name (--by) and a --reason")
        return await self._publish(
            OrderRejected(rejected_by=by, reason=reason, rejected_at=utc_now()),
            order_id,
            trace_parent,
        )

    # ----------------------------------------------------------------------- dead letters

    async def dead_letters(self, *, include_redriven: bool = False) -> list[DeadLetterEntry]:
        """Every dead letter in the DLQ topic, oldest first."""
        letters: dict[str, DeadLetterEntry] = {}
        redriven: dict[str, datetime] = {}
        for partition, offset, headers, value in sorted(await self._read_dlq()):
            entry_id = f"{partition}:{offset}"
            if any(k == REDRIVE_MARKER for k, _ in headers):
                marker = orjson.loads(value)
                redriven[marker["id"]] = datetime.fromisoformat(marker["at"])
                continue
            try:
                letters[entry_id] = DeadLetterEntry(entry_id, DeadLetter.from_json(value))
            except ValueError:
                continue  # not a dead letter record; nothing Choreo wrote
        entries = [DeadLetterEntry(e.id, e.letter, redriven.get(e.id)) for e in letters.values()]
        return [e for e in entries if include_redriven or e.redriven_at is None]

    async def redrive(self, entry_ids: Sequence[str]) -> list[DeadLetterEntry]:
        """Publish the original messages again to their source topics, unchanged, and mark
        them redriven. Consumers that handled them before skip them (same event id)."""
        wanted = set(entry_ids)
        entries = [e for e in await self.dead_letters() if e.id in wanted]
        missing = wanted - {e.id for e in entries}
        if missing:
            raise ChoreoError(f"no pending dead letter {', '.join(sorted(missing))}")
        records: list[OutgoingRecord] = []
        for entry in entries:
            letter = entry.letter
            if letter.original_value is None:
                raise ChoreoError(f"dead letter {entry.id} has no original value to redrive")
            records.append(
                OutgoingRecord(
                    topic=letter.source_topic,
                    key=letter.original_key or b"",
                    value=letter.original_value,
                    headers=tuple(letter.original_headers),
                    event_type=letter.event_type or "",
                )
            )
            records.append(
                OutgoingRecord(
                    topic=self.settings.dlq_topic,
                    key=letter.original_key or b"",
                    value=orjson.dumps({"id": entry.id, "at": utc_now().isoformat()}),
                    headers=((REDRIVE_MARKER, entry.id.encode()),),
                )
            )
        await self.producer.send_records(records)
        return entries

    async def _read_dlq(self) -> list[tuple[int, int, list[tuple[str, bytes]], bytes]]:
        return [
            (r.partition, r.offset, list(r.headers or ()), r.value or b"")
            async for r in read_to_end(self.settings, [self.settings.dlq_topic])
        ]


def new_order_id() -> str:
    """A short, unique, URL-safe order id: ``ord-`` + 12 hex digits."""
    return f"ord-{uuid.uuid4().hex[:12]}"
