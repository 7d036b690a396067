"""`choreo demo`: place one order per saga path, approve the large one, show how each ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from choreo.client import ChoreoClient
from choreo.scenarios import SCENARIOS, scenario_order
from events.database import Database, schema_name
from events.settings import Settings
from projections.queries import Queries
from saga_coordinator.saga import SagaState, fold
from saga_coordinator.store import PostgresSagaStore

TERMINAL = {"completed", "cancelled", "needs_attention"}
# "timeout" waits for the payment deadline (30 s by default); the demo skips it to stay quick.
DEMO_SCENARIOS = [name for name in SCENARIOS if name != "timeout"]


@dataclass
class DemoOrder:
    scenario: str
    order_id: str
    state: SagaState | None = None

    @property
    def status(self) -> str:
        return self.state.status if self.state is not None else "placed"


async def run_demo(
    settings: Settings,
    *,
    on_update: Callable[[list[DemoOrder]], None],
    timeout_s: float = 120.0,
) -> list[DemoOrder]:
    """Place the demo orders and follow them to a terminal state (or the timeout)."""
    async with ChoreoClient(settings) as client, Database(settings) as db:
        orders = []
        for name in DEMO_SCENARIOS:
            message = await client.place_order(scenario_order(name))
            orders.append(DemoOrder(name, message.order_id))
        approved: set[str] = set()
        schema = schema_name(settings, "saga_coordinator")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            async with db.pool.acquire() as conn:
                store = PostgresSagaStore(conn, schema)
                for order in orders:
                    facts = await store.load(order.order_id)
                    order.state = fold(order.order_id, facts) if facts else None
            for order in orders:
                if order.status == "awaiting_approval" and order.order_id not in approved:
                    queries = Queries(db, settings)
                    ready = await queries.ready()
                    parent = await queries.traceparent(order.order_id) if ready else None
                    await client.approve(
                        order.order_id, by="demo", reason="demo approval", trace_parent=parent
                    )
                    approved.add(order.order_id)
            on_update(orders)
            if all(o.status in TERMINAL for o in orders):
                break
            await asyncio.sleep(0.5)
        return orders
