"""Following a bench run's orders on the order topic: approve the large ones, record when each
ends, and how."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from choreo.client import ChoreoClient
from choreo.mix import APPROVER, TERMINAL
from contracts.catalog import OrderCancelled
from events.codec import Codec
from events.headers import EVENT_TYPE, header
from events.security import kafka_options
from events.settings import Settings
from events.topics import partitions_of, topic_for


@dataclass
class OrderRecord:
    """One placed order as the bench saw it (``perf_counter`` seconds)."""

    scenario: str
    published: float
    acked: float | None = None
    finished: float | None = None
    outcome: str | None = None
    detail: str | None = None


class OrderTracker:
    """Reads ``<prefix>order`` from the start (no consumer group): approves each of the
    bench's orders that asks for approval at once, and records when each one's terminal event
    arrives. Event types come from the headers; only cancellations are decoded (the reason)."""

    def __init__(self, settings: Settings, client: ChoreoClient, codec: Codec) -> None:
        self.settings = settings
        self.client = client
        self.codec = codec
        self.orders: dict[str, OrderRecord] = {}
        self.expected = 0
        self.finished = 0
        self.approvals = 0
        self.needs_attention = 0
        self.errors: list[str] = []
        self.all_done = asyncio.Event()
        self._consumer = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False)
        self._task: asyncio.Task[None] | None = None
        self._approvals: set[asyncio.Task[None]] = set()

    def reset(self, expected: int) -> None:
        """Forget the orders so far (the warm-up) and expect ``expected`` new ones."""
        self.orders.clear()
        self.expected = expected
        self.finished = self.approvals = self.needs_attention = 0
        self.all_done.clear()

    async def start(self) -> None:
        await self._consumer.start()
        partitions = await partitions_of(self.settings, [topic_for("order.placed", self.settings)])
        self._consumer.assign(partitions)
        for tp in partitions:
            self._consumer.seek(tp, 0)
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        """Stop following; waits for approvals in flight. Safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._approvals:
            await asyncio.gather(*self._approvals, return_exceptions=True)
        await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            arrived = time.perf_counter()
            for records in batch.values():
                for record in records:
                    self._see(record, arrived)

    def _see(self, record: ConsumerRecord, arrived: float) -> None:
        order_id = record.key.decode() if record.key else ""
        order = self.orders.get(order_id)
        event_type = header(record.headers, EVENT_TYPE)
        if order is None or event_type is None:
            return
        if event_type == "order.approval_requested":
            task = asyncio.create_task(self._approve(order_id))
            self._approvals.add(task)
            task.add_done_callback(self._approvals.discard)
        elif event_type == "order.needs_attention":
            self.needs_attention += 1
        elif event_type in TERMINAL and order.finished is None:
            order.finished = arrived
            if event_type == "order.completed":
                order.outcome = "completed"
            else:
                order.outcome, order.detail = self._reason(record)
            self.finished += 1
            if self.finished >= self.expected:
                self.all_done.set()

    def _reason(self, record: ConsumerRecord) -> tuple[str, str | None]:
        """``cancelled:<reason>`` and the cancellation's detail."""
        try:
            event = self.codec.decode(record.value).event
        except Exception as exc:  # report, never stop following
            self.errors.append(f"undecodable cancellation at offset {record.offset}: {exc}")
            return "cancelled:?", None
        if not isinstance(event, OrderCancelled):
            return "cancelled:?", None
        return f"cancelled:{event.reason}", event.detail

    async def _approve(self, order_id: str) -> None:
        try:
            await self.client.approve(order_id, by=APPROVER, reason="auto-approved by the bench")
            self.approvals += 1
        except Exception as exc:  # reported; the order then times out and shows as unexpected
            self.errors.append(f"approving {order_id} failed: {exc}")
