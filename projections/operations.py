"""What the API does besides reading: answer the human task a saga of any type waits on (an
order's approval too) and redrive dead letters.

The read side may not import the CLI's client (``choreo`` sits above ``projections``), so the
API composes the same building blocks the client does, from the layers below both:
:class:`~sagas.definition.HumanTask`'s ``answer`` (the event a person's answer is),
:func:`events.producer.publish_first` (published under a span that joins the order's trace) and
:class:`events.redrive.DeadLetterQueue`. Decisions are recorded under the caller's token name,
with ``api`` as the envelope's producer. The Kafka producer starts on first use, so the API
serves reads while Kafka is down (and because aiokafka's clients must be created inside the
running event loop, which :func:`~projections.api.create_app` is not called in).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from contracts.catalog import CATALOG
from events.codec import Codec
from events.errors import ChoreoError
from events.model import Event, Message
from events.producer import EventProducer, publish_first
from events.redrive import DeadLetterEntry, DeadLetterQueue
from events.schemas import SchemaRegistry
from events.settings import Settings
from projections import API, sagas_queries
from projections.queries import Queries
from sagas.definition import HumanTask
from sagas.registry import SagaRegistry

DEAD_LETTERS_TTL_S = 5.0
"""How long a read of the dead-letter topic is reused (the console polls; each read scans)."""


class NotFound(ChoreoError):
    """No such saga or dead letter."""


class Conflict(ChoreoError):
    """The order is not in a state that takes this action."""


class Operations:
    """Approvals and redrives for the API of ``settings``'s deployment."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = Codec(SchemaRegistry.load(settings.schemas_dir), CATALOG)
        self._producer: EventProducer | None = None
        self._lock = asyncio.Lock()
        self._letters: tuple[float, list[DeadLetterEntry]] | None = None

    async def _started(self) -> EventProducer:
        async with self._lock:  # two first requests must not start it twice
            if self._producer is None:
                self._producer = EventProducer(
                    self.settings, self.codec, client_id=f"choreo-{API.name}"
                )
            await self._producer.start()
        return self._producer

    async def _queue(self) -> DeadLetterQueue:
        return DeadLetterQueue(self.settings, await self._started())

    async def close(self) -> None:
        """Stop the producer, if it was started (idempotent)."""
        if self._producer is not None:
            await self._producer.stop()

    async def answer(
        self,
        queries: Queries,
        definitions: SagaRegistry,
        saga: tuple[str, str],
        *,
        approve: bool,
        by: str,
        reason: str | None,
    ) -> Message[Event]:
        """Answer the human task the saga ``saga`` (type, key) waits on, as ``by``, in the
        saga's trace, with the event its definition's task builds.

        Raises:
            NotFound: no such saga.
            Conflict: it waits for no answer, or its task builds none (``HumanTask.answer``).
        """
        saga_type, key = saga
        row = await sagas_queries.saga(queries, saga_type, key)
        if row is None:
            raise NotFound(f"no {saga_type} saga {key}")
        waiting = sagas_queries.waiting_on(row)
        if waiting is None:
            raise Conflict(f"{saga_type} {key} is {row['status']}: it waits for no one's answer")
        definition = definitions.get(saga_type, row["version"])
        task = definition.node(waiting)
        if not isinstance(task, HumanTask) or task.answer is None:
            raise Conflict(f"{saga_type} v{row['version']}'s {waiting} takes no answer here")
        return await publish_first(
            await self._started(),
            task.answer(approve, by, reason),
            saga_type=saga_type,
            saga_key=key,
            by=API.name,
            trace_parent=await queries.traceparent(key, definition.start.event_type),
        )

    async def dead_letters(self, *, include_redriven: bool = False) -> list[DeadLetterEntry]:
        """The dead letters (a read at most :data:`DEAD_LETTERS_TTL_S` old)."""
        now = time.monotonic()
        if self._letters is None or now - self._letters[0] > DEAD_LETTERS_TTL_S:
            queue = await self._queue()
            self._letters = (now, await queue.entries(include_redriven=True))
        return [e for e in self._letters[1] if include_redriven or e.redriven_at is None]

    async def redrive(
        self, ids: Sequence[str], *, every_pending: bool, by: str
    ) -> list[DeadLetterEntry]:
        """Redrive ``ids`` (or every pending letter) as ``by``.

        Raises:
            NotFound: an id is not a pending dead letter.
        """
        queue = await self._queue()
        self._letters = None  # decide on the topic as it is now, and show the result after
        if every_pending:
            ids = [e.id for e in await queue.entries()]
        if not ids:
            return []
        try:
            return await queue.redrive(ids, by=by)
        except ChoreoError as exc:
            raise NotFound(str(exc)) from exc
        finally:
            self._letters = None
