"""How one saga type is doing (:mod:`projections.sagas_activity`), from ``saga_status`` rows
on the real PostgreSQL: sagas started and latency per minute, step latency, cancel reasons,
each of one type only; and the console's type page drawing them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from events.database import Database
from events.settings import Settings
from projections import PROJECTOR, sagas_activity, sagas_store, store
from projections.queries import Queries
from tests.integration.test_api import drop_schema

pytestmark = pytest.mark.integration


def _step(name: str, started: datetime, took_s: float | None) -> dict[str, Any]:
    finished = None if took_s is None else started + timedelta(seconds=took_s)
    return {
        "step": name,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat() if finished else None,
    }


async def _insert(
    db: Database,
    schema: str,
    saga_type: str,
    key: str,
    status: str,
    started: datetime,
    *,
    took_s: float | None = None,
    reason: str | None = None,
    steps: list[dict[str, Any]] | None = None,
) -> None:
    ended = None if took_s is None else started + timedelta(seconds=took_s)
    await db.pool.execute(
        f"INSERT INTO {schema}.saga_status (saga_type, saga_key, version, status, reason,"
        " current_steps, steps_done, steps_expected, started_at, updated_at, ended_at,"
        " timeline, compensations, event_count)"
        " VALUES ($1, $2, 1, $3, $4, '{}', 0, 2, $5, $5, $6, $7::jsonb, '[]', 3)",
        saga_type,
        key,
        status,
        reason,
        started,
        ended,
        orjson.dumps(steps or []).decode(),
    )


async def test_a_types_activity_counts_its_own_sagas_only(settings: Settings):
    schema = PROJECTOR.schema(settings)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    minute_ago = now - timedelta(minutes=1)
    try:
        async with Database(settings) as db:
            await db.migrate(schema, *store.ddl())
            # Three returns started a minute ago: two ended (2 s and 4 s), one still running;
            # one cancelled long ago; and an order, which is not the returns'.
            for key, took, status, reason in (
                ("ret-1", 2.0, "completed", None),
                ("ret-2", 4.0, "cancelled", "pickup_failed"),
                ("ret-3", None, "running", None),
            ):
                steps = [_step("pickup", minute_ago, 1.5), _step("refund", minute_ago, took)]
                await _insert(
                    db, schema, "return", key, status, minute_ago,
                    took_s=took, reason=reason, steps=steps,
                )  # fmt: skip
            await _insert(
                db, schema, "return", "ret-old", "cancelled", now - timedelta(hours=3),
                took_s=60.0, reason="pickup_failed",
            )  # fmt: skip
            await _insert(
                db, schema, "order", "ord-1", "cancelled", minute_ago, took_s=9.0,
                reason="payment_declined", steps=[_step("pickup", minute_ago, 99.0)],
            )  # fmt: skip
            found = await sagas_activity.activity(Queries(db, settings), "return")

            started = found["started"]
            assert len(started) == sagas_activity.MINUTES
            assert [p["started"] for p in started if p["started"]] == [3]
            assert started[-2]["minute"] == minute_ago.isoformat()
            ended = [p for p in found["latency"] if p["n"]]
            assert [p["n"] for p in ended] == [2], found["latency"]
            assert ended[0]["p50"] == 3000.0  # 2 s and 4 s; the order's 9 s is not a return's
            assert found["steps"]["pickup"] == {"count": 3, "p50": 1500.0, "p95": 1500.0}
            assert found["steps"]["refund"]["count"] == 2  # the running one's is not finished
            assert found["reasons"] == {"pickup_failed": 2}

            # Each minute is a range of a list index (the type's, or every type's with the
            # type filtered, as the planner prefers), not a scan of the table.
            async with db.pool.acquire() as conn:
                await conn.execute("SET enable_seqscan = off")
                plan = "\n".join(
                    r[0]
                    for r in await conn.fetch(
                        f"EXPLAIN SELECT count(*) FROM {schema}.saga_status"
                        f" WHERE saga_type = 'return' AND {sagas_store.STARTED} >= $1"
                        f" AND {sagas_store.STARTED} < $2",
                        minute_ago,
                        now,
                    )
                )
            bound = "COALESCE(started_at, '-infinity'::timestamp with time zone) >="
            assert "Seq Scan" not in plan, plan
            assert bound in plan.split("Index Cond:")[1], plan
    finally:
        await drop_schema(settings)


async def test_an_unknown_type_has_no_activity(settings: Settings):
    schema = PROJECTOR.schema(settings)
    try:
        async with Database(settings) as db:
            await db.migrate(schema, *store.ddl())
            found = await sagas_activity.activity(Queries(db, settings), "nothing")
        assert sum(p["started"] for p in found["started"]) == 0
        assert all(p["p50"] is None for p in found["latency"])
        assert found["steps"] == {}
        assert found["reasons"] == {}
    finally:
        await drop_schema(settings)
