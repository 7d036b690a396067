"""`choreo demo`: place one order per saga path, approve the large one, show how each ends.

It follows the orders through the public read model (the projector's ``order_status`` and
event log, as `choreo orders status` does), never through a process's private tables.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from choreo.client import ChoreoClient
from contracts.order import TERMINAL_STATUSES
from contracts.samples import SCENARIOS, scenario_order
from events.database import Database
from events.settings import Settings
from projections.queries import Queries

# "timeout" waits for the payment deadline (30 s by default); the demo skips it to stay quick.
DEMO_SCENARIOS = [name for name in SCENARIOS if name != "timeout"]


@dataclass
class DemoOrder:
    """One demo order and what the read model says of it."""

    scenario: str
    order_id: str
    status: str = "placed"
    cancel_reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def detail(self) -> str:
        """The cancel reason, or the notes a completed order ended with."""
        return self.cancel_reason or "; ".join(self.notes)

    def update(self, row: dict[str, Any] | None, notes: list[str]) -> None:
        if row is not None:
            self.status, self.cancel_reason = row["status"], row["cancel_reason"]
        self.notes = notes


async def run_demo(
    settings: Settings,
    *,
    on_update: Callable[[list[DemoOrder]], None],
    timeout_s: float = 120.0,
) -> list[DemoOrder]:
    """Place the demo orders and follow them to a terminal state (or the timeout)."""
    async with ChoreoClient(settings) as client, Database(settings) as db:
        queries = Queries(db, settings)
        orders = []
        for name in DEMO_SCENARIOS:
            message = await client.place_order(scenario_order(name))
            orders.append(DemoOrder(name, message.saga_key))
        approved: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await queries.ready():
                for order in orders:
                    row = await queries.status(order.order_id)
                    order.update(row, await queries.completion_notes(order.order_id))
                    if order.status == "awaiting_approval" and order.order_id not in approved:
                        await client.approve(
                            order.order_id,
                            by="demo",
                            reason="demo approval",
                            trace_parent=await queries.traceparent(order.order_id),
                        )
                        approved.add(order.order_id)
            on_update(orders)
            if all(o.done for o in orders):
                break
            await asyncio.sleep(0.5)
        return orders
