"""End-to-end fixtures: a real platform per test module, and the invariants checked after
every test from the services' own state (never from the coordinator's word alone)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from choreo.client import ChoreoClient
from choreo.platform import remove_deployment
from contracts.samples import scenario_order
from events.database import Database, schema_name
from events.settings import Settings, get_settings
from events.topics import provision_topics
from saga_coordinator import legacy
from saga_coordinator.engine.state import fold
from saga_coordinator.store import PostgresSagaStore
from sagas.shipped import SAGAS
from services.email.store import PostgresEmailStore
from services.inventory.store import PostgresInventoryStore
from services.payment.store import PostgresPaymentStore
from tests.e2e.order_saga import OrderSaga
from tests.e2e.platform import Platform

TERMINAL = {"completed", "cancelled"}

# Fast retries and deadlines so that every path finishes in seconds.
BASE_ENV = {
    "CHOREO_HANDLER_BACKOFF_INITIAL_MS": "50",
    "CHOREO_HANDLER_BACKOFF_MAX_MS": "400",
    "CHOREO_HANDLER_MAX_ATTEMPTS": "4",
    "CHOREO_PAYMENT_GATEWAY_TIMEOUT_S": "0.5",
    "CHOREO_SAGA_APPROVAL_TIMEOUT_S": "120",
    "CHOREO_SAGA_INVENTORY_DEADLINE_S": "30",
    "CHOREO_SAGA_PAYMENT_DEADLINE_S": "20",
    "CHOREO_CONSUMER_SESSION_TIMEOUT_MS": "6000",
    "CHOREO_SAGA_SHIPPING_DEADLINE_S": "30",
    "CHOREO_SAGA_CRM_DEADLINE_S": "30",
    "CHOREO_SAGA_EMAIL_DEADLINE_S": "20",
    "CHOREO_SAGA_COMPENSATION_ACK_TIMEOUT_S": "5",
    "CHOREO_SAGA_TIMER_POLL_INTERVAL_MS": "100",
    "CHOREO_METRICS_EXPORT_INTERVAL_MS": "1000",
}


@dataclass
class Deployment:
    """A running platform plus what a test needs to drive and inspect it."""

    settings: Settings
    platform: Platform
    db: Database
    client: ChoreoClient
    orders: list[str] = field(default_factory=list)

    async def place(self, scenario: str) -> str:
        message = await self.client.place_order(scenario_order(scenario))
        self.orders.append(message.saga_key)
        return message.saga_key

    async def saga(self, order_id: str) -> OrderSaga:
        schema = schema_name(self.settings, "saga_coordinator")
        async with self.db.pool.acquire() as conn:
            facts = await PostgresSagaStore(conn, schema).load(order_id)
        return OrderSaga(fold(order_id, legacy.read(facts, SAGAS)))

    async def wait_for(self, order_id: str, *statuses: str, timeout: float = 60.0) -> OrderSaga:
        wanted = set(statuses or TERMINAL)
        deadline = time.monotonic() + timeout
        state = await self.saga(order_id)
        while state.status not in wanted:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"order {order_id} is {state.status}, not {sorted(wanted)} after {timeout}s;"
                    f" facts: {state}\n" + self.platform.tail("saga-coordinator")
                )
            await asyncio.sleep(0.2)
            state = await self.saga(order_id)
        return state

    async def check_invariants(self) -> None:
        """What must hold whatever happened: checked from each service's own tables."""
        async with self.db.pool.acquire() as conn:
            stock = await PostgresInventoryStore(
                conn, schema_name(self.settings, "inventory")
            ).stock_levels()
            charges = await PostgresPaymentStore(
                conn, schema_name(self.settings, "payment")
            ).charges()
            emails = PostgresEmailStore(conn, schema_name(self.settings, "email"))
            sent = {order_id: await emails.sent(order_id) for order_id in self.orders}
        for sku, level in stock.items():
            assert level.available + level.reserved + level.shipped == level.seeded, (sku, level)
        states = {order_id: await self.saga(order_id) for order_id in self.orders}
        for order_id, state in states.items():
            assert state.status in TERMINAL, f"{order_id} is {state.status}"
            charge = charges.get(order_id)
            if charge is not None:
                if state.status == "completed":
                    assert charge.refund_count == 0, (order_id, charge)
                else:
                    assert charge.refunded, (order_id, charge)
                    assert charge.refund_count == 1, (order_id, charge)
            confirmations = [m for m in sent[order_id] if m.template == "order_confirmation"]
            assert len(confirmations) <= 1, (order_id, confirmations)
        # Nothing held for an order that ended: completed orders shipped, cancelled released.
        if all(s.status in TERMINAL for s in states.values()):
            assert sum(level.reserved for level in stock.values()) == 0, stock
        assert not self.platform.errors(), self.platform.errors()


async def start_deployment(
    env: dict[str, str],
    name: str,
    replicas: dict[str, int] | None = None,
    base: Settings | None = None,
) -> AsyncIterator[Deployment]:
    """A platform with its own topics, groups and schemas (``replicas[name]`` instances of a
    process, default one); stopped and checked at the end. Needs the ``stack`` fixture (the
    real infrastructure) to have run. ``base``: the settings to start from (the secured Kafka's
    administrator's: then each process runs as its own Kafka user), default the stack's."""
    prefix = f"e2e{uuid.uuid4().hex[:8]}."
    settings = (base or get_settings()).model_copy(update={"topic_prefix": prefix})
    await provision_topics(settings)
    platform = Platform(
        settings,
        {**BASE_ENV, **env},
        settings.state_dir / "e2e" / f"{name}-{prefix.rstrip('.')}",
        replicas,
    )
    db = Database(settings)
    try:
        await platform.start(timeout=120)  # ten processes importing at once on two busy cores
        await db.start()
    except BaseException:
        # A failed start must not leave processes behind (holding connections and CPU).
        await platform.stop(grace_s=5)
        raise
    try:
        async with ChoreoClient(settings) as client:
            yield Deployment(settings, platform, db, client)
    finally:
        codes = await platform.stop()
        await db.stop()
        await remove_deployment(settings)
    # A graceful stop drains and exits 0: SIGTERM handling is part of what is tested. None: it
    # did not exit within the grace period and was killed.
    unclean = {name: code for name, code in codes.items() if code != 0}
    assert not unclean, f"not stopped cleanly (exit codes): {unclean}\n" + "\n".join(
        f"--- {name}, its last lines:\n{platform.tail(name, 15)}" for name in unclean
    )


@pytest.fixture
async def checked(deployment: Deployment) -> AsyncIterator[Deployment]:
    """The module's deployment, with the invariants checked after the test."""
    deployment.orders.clear()
    yield deployment
    await deployment.check_invariants()
