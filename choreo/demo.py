"""`choreo demo`: one saga per path of every shipped saga, shown until each ends.

It places one order per order-saga path, approves the large one, and once an order has ended,
requests the returns of its items that the returns saga's paths need (approving the large
one too). It follows every saga through the public read models (the projector's
``saga_status``, as `choreo orders|sagas status` do), never through a
process's private tables.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from choreo.chaos.returns import EXPECTED as RETURN_ENDS
from choreo.client import ChoreoClient
from choreo.mix import EXPECTED as ORDER_ENDS
from contracts.order import TERMINAL_STATUSES
from contracts.return_samples import RETURN_OF, RETURN_SCENARIOS, scenario_return
from contracts.returns import ReturnApproved
from contracts.samples import SCENARIOS, scenario_order
from events.database import Database
from events.model import utc_now
from events.settings import Settings
from projections import sagas_queries
from projections.queries import Queries

# "timeout" waits for the payment deadline (30 s by default); the demo skips it to stay quick.
DEMO_SCENARIOS = [name for name in SCENARIOS if name != "timeout"]


@dataclass
class DemoSaga:
    """One demo saga (an order or a return) and what the read model says of it."""

    saga_type: str
    scenario: str
    key: str
    status: str = "started"
    cancel_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    approved: bool = False
    """Whether the demo answered it (a large order or return waits for a person)."""

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def detail(self) -> str:
        """The cancel reason, or the notes a completed saga ended with."""
        return self.cancel_reason or "; ".join(self.notes)

    @property
    def ended(self) -> str:
        """How it ended, as its path's expected end is written: ``completed``,
        ``cancelled:<reason>``."""
        return f"{self.status}:{self.cancel_reason}" if self.cancel_reason else self.status

    @property
    def expected(self) -> str:
        """How its path ends on a platform that keeps up (what ``choreo bench`` checks too)."""
        return (ORDER_ENDS if self.saga_type == "order" else RETURN_ENDS)[self.scenario]

    @property
    def unexpected(self) -> bool:
        """Ended, but not as its path does."""
        return self.done and self.ended != self.expected

    @property
    def shows(self) -> str:
        """What the path shows (the README's words)."""
        scenarios = SCENARIOS if self.saga_type == "order" else RETURN_SCENARIOS
        return scenarios[self.scenario] + ("; the demo approved it" if self.approved else "")

    def update(self, status: str, reason: str | None, notes: list[str]) -> None:
        self.status, self.cancel_reason, self.notes = status, reason, notes


async def run_demo(
    settings: Settings,
    *,
    on_update: Callable[[list[DemoSaga]], None],
    timeout_s: float = 120.0,
) -> list[DemoSaga]:
    """Start the demo sagas and follow them to a terminal state (or the timeout)."""
    async with ChoreoClient(settings) as client, Database(settings) as db:
        demo = _Demo(client, Queries(db, settings))
        await demo.place_orders()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await demo.queries.ready():
                await demo.step()
            on_update(demo.sagas)
            if demo.finished:
                break
            await asyncio.sleep(0.5)
        return demo.sagas


class _Demo:
    """The demo's sagas and what it does for them on each look at the read models."""

    def __init__(self, client: ChoreoClient, queries: Queries) -> None:
        self.client, self.queries = client, queries
        self.sagas: list[DemoSaga] = []
        self.returns_requested: set[str] = set()

    @property
    def finished(self) -> bool:
        return len(self.returns_requested) == len(RETURN_SCENARIOS) and all(
            s.done for s in self.sagas
        )

    async def place_orders(self) -> None:
        for name in DEMO_SCENARIOS:
            message = await self.client.place_order(scenario_order(name))
            self.sagas.append(DemoSaga("order", name, message.saga_key))

    async def step(self) -> None:
        for saga in list(self.sagas):
            if saga.saga_type == "order":
                await self._follow_order(saga)
            else:
                await self._follow_return(saga)

    async def _follow_order(self, order: DemoSaga) -> None:
        row = await self.queries.status(order.key)
        if row is not None:
            notes = await self.queries.completion_notes(order.key)
            order.update(row["status"], row["cancel_reason"], notes)
        if order.status == "awaiting_approval" and not order.approved:
            await self.client.approve(
                order.key,
                by="demo",
                reason="demo approval",
                trace_parent=await self.queries.traceparent(order.key),
            )
            order.approved = True
        if order.done:
            await self._request_returns_of(order)

    async def _request_returns_of(self, order: DemoSaga) -> None:
        for name, of in RETURN_OF.items():
            if of == order.scenario and name not in self.returns_requested:
                message = await self.client.start_saga("return", scenario_return(name, order.key))
                self.sagas.append(DemoSaga("return", name, message.saga_key))
                self.returns_requested.add(name)

    async def _follow_return(self, saga: DemoSaga) -> None:
        row: dict[str, Any] | None = await sagas_queries.saga(self.queries, "return", saga.key)
        if row is not None:
            saga.update(row["status"], row.get("reason"), [])
        if saga.status == "awaiting_approval" and not saga.approved:
            approval = ReturnApproved(approved_by="demo", reason="demo", approved_at=utc_now())
            await self.client.answer("return", saga.key, approval)
            saga.approved = True
