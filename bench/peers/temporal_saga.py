"""The order saga on Temporal: a workflow per order, activities writing the per-service state.

Following Temporal's Python SDK documentation and samples: the workflow
(:mod:`bench.peers.temporal_workflow`, the saga sample's shape: compensations list, activity
retry policies, a signal for the approval) and the activities
(:mod:`bench.peers.temporal_activities`, one PostgreSQL transaction each) run in one worker;
the order id is the **workflow id**, so starting the same order twice is refused by the
server.

Run as a child process of :mod:`bench.peers.runner` (client and worker in one process,
against the dev server of :mod:`bench.peers.server`):
``python -m bench.peers.temporal_saga '<LoadConfig JSON>'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from bench.peers.common import PeerOrder, Providers
from bench.peers.load import LoadConfig, check_invariants, main_of, prepare_schema
from bench.peers.temporal_activities import OrderActivities
from bench.peers.temporal_workflow import TASK_QUEUE, OrderSaga

RPC_TIMEOUT = timedelta(seconds=120)
"""A burst of starts queues at the server: wait for its answer longer than the default."""


def _url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


class TemporalDriver:
    """Starts an order's workflow and hands back a task awaiting its result."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def start(self, order: PeerOrder) -> Awaitable[tuple[str, float]]:
        handle = await self.client.start_workflow(
            OrderSaga.run, order, id=order.order_id, task_queue=TASK_QUEUE, rpc_timeout=RPC_TIMEOUT
        )
        if order.needs_approval:
            # As `choreo bench` approves large orders at once.
            with contextlib.suppress(RPCError):  # it may have ended already (out of stock)
                await handle.signal(OrderSaga.approve, "approved", rpc_timeout=RPC_TIMEOUT)

        async def ending() -> tuple[str, float]:
            outcome = await handle.result()
            return outcome, time.perf_counter()

        return asyncio.create_task(ending())


@contextlib.asynccontextmanager
async def setup(config: LoadConfig) -> AsyncIterator[Any]:
    """Schema, pool, client and worker; yields (driver, new order id, invariant check)."""
    await prepare_schema(config.database_url, config.schema)
    engine = create_async_engine(_url(config.database_url), pool_size=10, max_overflow=10)
    client = await Client.connect(config.temporal_address)
    activities = OrderActivities(engine, config.schema, Providers())

    async def check() -> dict[str, Any]:
        return await check_invariants(config.database_url, config.schema, config.schema)

    try:
        async with Worker(
            client, task_queue=TASK_QUEUE, workflows=[OrderSaga], activities=activities.all()
        ):
            yield TemporalDriver(client), lambda: f"ord-{uuid.uuid4().hex[:12]}", check
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main_of(LoadConfig.from_json(sys.argv[1].encode()), setup))
