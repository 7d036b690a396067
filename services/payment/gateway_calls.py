"""The simulated gateway's call count per key, kept where every replica of payment sees it.

:class:`~services.payment.provider.SimulatedGateway` stands in for one external gateway, and
its ``tok_flaky`` answer depends on how many calls that gateway has had for a key. Counted in
each process's memory, replicas of payment (``choreo run --replicas payment=2``) each had a
gateway of their own: a flaky card failed its first calls on every replica, so its order
took twice the attempts a single gateway would need. :class:`PostgresGatewayCalls` keeps one
count per key in the payment schema, shared by the replicas as a real gateway's state is.
Only a flaky card's calls are counted here (the only answer a count decides), each in its own
statement, outside the handler's transaction: a call made is not undone when the delivery
rolls back.
"""

from __future__ import annotations

from typing import Protocol

from events.database import Database

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.simulated_gateway_calls (
    idempotency_key text PRIMARY KEY,
    calls           int  NOT NULL
);
"""


class GatewayCalls(Protocol):
    """Where a simulated gateway counts the calls it had per idempotency key."""

    async def count(self, key: str) -> int:
        """Count one more call under ``key``; returns its number (from 1)."""
        ...


class PostgresGatewayCalls:
    """Call counts in ``{schema}.simulated_gateway_calls``, shared by every replica.

    Built before the process has a database; :meth:`attach` (the service's ``on_start``) gives
    it the process's database and schema.
    """

    def __init__(self) -> None:
        self._db: Database | None = None
        self._statement = ""

    def attach(self, db: Database, schema: str) -> None:
        self._db = db
        self._statement = (
            f"INSERT INTO {schema}.simulated_gateway_calls AS c (idempotency_key, calls)"
            " VALUES ($1, 1) ON CONFLICT (idempotency_key)"
            " DO UPDATE SET calls = c.calls + 1 RETURNING calls"
        )

    async def count(self, key: str) -> int:
        if self._db is None:
            raise RuntimeError("the gateway's call count is used before the process started")
        calls: int = await self._db.pool.fetchval(self._statement, key)
        return calls
