"""How one saga type is doing (:mod:`projections.sagas_activity`), from ``saga_status`` rows
on the real PostgreSQL: sagas started and latency per minute, step latency, cancel reasons,
each of one type only; through the API's ``GET /sagas/activity`` and `choreo sagas
activity`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from events.database import Database
from events.settings import Settings
from projections import PROJECTOR, sagas_activity, sagas_store, store
from projections.api import create_app
from projections.queries import Queries
from sagas.shipped import SAGAS
from tests.conftest import ApiTokens
from tests.integration.test_api import drop_schema, serve
from tests.integration.test_cli_checks import _choreo, cli_on

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


NOW = datetime.now(UTC).replace(second=0, microsecond=0)
MINUTE_AGO = NOW - timedelta(minutes=1)


@pytest.fixture
async def returns(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Database]:
    """Three returns started a minute ago: two ended (2 s and 4 s), one still running; one
    cancelled hours ago; and an order, which is not the returns'. The CLI set to them."""
    schema = PROJECTOR.schema(settings)
    try:
        async with Database(settings) as db:
            await db.migrate(schema, *store.ddl())
            for key, took, status, reason in (
                ("ret-1", 2.0, "completed", None),
                ("ret-2", 4.0, "cancelled", "pickup_failed"),
                ("ret-3", None, "running", None),
            ):
                steps = [_step("refund", MINUTE_AGO, took), _step("pickup", MINUTE_AGO, 1.5)]
                if key == "ret-1":
                    steps.append(_step("email", MINUTE_AGO, 0.5))
                await _insert(
                    db, schema, "return", key, status, MINUTE_AGO,
                    took_s=took, reason=reason, steps=steps,
                )  # fmt: skip
            await _insert(
                db, schema, "return", "ret-old", "cancelled", NOW - timedelta(hours=3),
                took_s=60.0, reason="pickup_failed",
            )  # fmt: skip
            await _insert(
                db, schema, "order", "ord-1", "cancelled", MINUTE_AGO, took_s=9.0,
                reason="payment_declined", steps=[_step("pickup", MINUTE_AGO, 99.0)],
            )  # fmt: skip
            with cli_on(settings, monkeypatch):
                yield db
    finally:
        await drop_schema(settings)


async def test_a_types_activity_counts_its_own_sagas_only(returns: Database, settings: Settings):
    found = await sagas_activity.activity(Queries(returns, settings), SAGAS, "return")
    started = found["started"]
    assert len(started) == sagas_activity.MINUTES
    assert [p["started"] for p in started if p["started"]] == [3]
    assert started[-2]["minute"] == MINUTE_AGO.isoformat()
    ended = [p for p in found["latency"] if p["n"]]
    assert [p["n"] for p in ended] == [2], found["latency"]
    assert ended[0]["p50"] == 3000.0  # 2 s and 4 s; the order's 9 s is not a return's
    assert found["steps"]["pickup"] == {"count": 3, "p50": 1500.0, "p95": 1500.0}
    assert found["steps"]["refund"]["count"] == 2  # the running one's is not finished
    assert list(found["steps"]) == ["pickup", "refund", "email"]  # the definition's order
    assert found["reasons"] == {"pickup_failed": 2}

    # Each minute is a range of a list index (the type's, or every type's with the type
    # filtered, as the planner prefers), not a scan of the table.
    async with returns.pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                f"EXPLAIN SELECT count(*) FROM {PROJECTOR.schema(settings)}.saga_status"
                f" WHERE saga_type = 'return' AND {sagas_store.STARTED} >= $1"
                f" AND {sagas_store.STARTED} < $2",
                MINUTE_AGO,
                NOW,
            )
        )
    bound = "COALESCE(started_at, '-infinity'::timestamp with time zone) >="
    assert "Seq Scan" not in plan, plan
    assert bound in plan.split("Index Cond:")[1], plan


async def test_the_api_and_the_cli_give_the_same_activity(
    returns: Database, settings: Settings, api_tokens: ApiTokens
):
    async with serve(create_app(settings, api_tokens.api), api_tokens.viewer) as api:
        response = await api.get("/sagas/activity", params={"type": "return", "minutes": 5})
        assert response.status_code == 200, response.text
        unknown = await api.get("/sagas/activity", params={"type": "nope"})
        assert (unknown.status_code, unknown.json()["detail"]) == (404, "no saga type nope")
        assert (
            await api.get("/sagas/activity", params={"type": "return", "minutes": 0})
        ).status_code == 422
    answer = response.json()
    assert (answer["saga_type"], answer["minutes"], len(answer["started"])) == ("return", 5, 5)
    assert answer["reasons"] == {"pickup_failed": 2}
    assert list(answer["steps"]) == ["pickup", "refund", "email"]

    listed = await _choreo("sagas", "activity", "return", "--minutes", "5", "--json")
    assert listed.exit_code == 0, listed.output
    assert orjson.loads(listed.stdout)["steps"] == answer["steps"]
    table = await _choreo("sagas", "activity", "return")
    assert table.exit_code == 0, table.output
    assert "last 30 minutes: 3 started, 2 ended" in table.stdout
    assert MINUTE_AGO.strftime("%H:%M") in table.stdout
    assert "cancelled: pickup failed 2" in table.stdout
    unknown_cli = await _choreo("sagas", "activity", "nope")
    assert unknown_cli.exit_code == 1
    assert "no saga type 'nope' (the coordinator runs: order, return)" in unknown_cli.output


async def test_an_unknown_type_has_no_activity(settings: Settings):
    schema = PROJECTOR.schema(settings)
    try:
        async with Database(settings) as db:
            await db.migrate(schema, *store.ddl())
            found = await sagas_activity.activity(Queries(db, settings), SAGAS, "nothing")
        assert sum(p["started"] for p in found["started"]) == 0
        assert all(p["p50"] is None for p in found["latency"])
        assert found["steps"] == {}
        assert found["reasons"] == {}
    finally:
        await drop_schema(settings)
