"""How one saga type is doing (:mod:`projections.sagas_activity`), from ``saga_status`` rows
on the real PostgreSQL: sagas started and latency per minute, step latency, cancel reasons,
each of one type only; through the API's ``GET /sagas/activity`` and `choreo sagas
activity`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

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


class Returns(NamedTuple):
    db: Database
    minute_ago: datetime
    """The start of the minute before the fixture's, when the returns started."""


@pytest.fixture
async def returns(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Returns]:
    """Three returns started a minute ago: two ended (2 s and 4 s), one still running; one
    cancelled hours ago; and an order, which is not the returns'. The CLI set to them."""
    schema = PROJECTOR.schema(settings)
    # Now, not when the module was collected: the window is the last 30 minutes of the query.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    minute_ago = now - timedelta(minutes=1)
    try:
        async with Database(settings) as db:
            await db.migrate(schema, *store.ddl())
            for key, took, status, reason in (
                ("ret-1", 2.0, "completed", None),
                ("ret-2", 4.0, "cancelled", "pickup_failed"),
                ("ret-3", None, "running", None),
            ):
                steps = [_step("refund", minute_ago, took), _step("pickup", minute_ago, 1.5)]
                if key == "ret-1":
                    steps.append(_step("email", minute_ago, 0.5))
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
            with cli_on(settings, monkeypatch):
                yield Returns(db, minute_ago)
    finally:
        await drop_schema(settings)


async def test_a_types_activity_counts_its_own_sagas_only(returns: Returns, settings: Settings):
    found = await sagas_activity.activity(Queries(returns.db, settings), SAGAS, "return")
    started = found["started"]
    assert len(started) == sagas_activity.MINUTES
    # (Read by minute: the window may have moved on by a minute since the rows were written.)
    by_minute = {p["minute"]: p["started"] for p in started}
    assert by_minute[returns.minute_ago.isoformat()] == 3
    assert sum(by_minute.values()) == 3
    ended = [p for p in found["latency"] if p["n"]]
    assert [p["n"] for p in ended] == [2], found["latency"]
    assert ended[0]["p50"] == 3000.0  # 2 s and 4 s; the order's 9 s is not a return's
    assert found["steps"]["pickup"] == {"count": 3, "p50": 1500.0, "p95": 1500.0}
    assert found["steps"]["refund"]["count"] == 2  # the running one's is not finished
    assert list(found["steps"]) == ["pickup", "refund", "email"]  # the definition's order
    assert found["reasons"] == {"pickup_failed": 2}

    # Each minute is a range of a list index (the type's, or every type's with the type
    # filtered, as the planner prefers), not a scan of the table.
    async with returns.db.pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                f"EXPLAIN SELECT count(*) FROM {PROJECTOR.schema(settings)}.saga_status"
                f" WHERE saga_type = 'return' AND {sagas_store.STARTED} >= $1"
                f" AND {sagas_store.STARTED} < $2",
                returns.minute_ago,
                returns.minute_ago + timedelta(minutes=1),
            )
        )
    bound = "COALESCE(started_at, '-infinity'::timestamp with time zone) >="
    assert "Seq Scan" not in plan, plan
    assert bound in plan.split("Index Cond:")[1], plan


async def test_the_api_and_the_cli_give_the_same_activity(
    returns: Returns, settings: Settings, api_tokens: ApiTokens
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
    assert returns.minute_ago.strftime("%H:%M") in table.stdout
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
        # Every minute of the window, each empty.
        assert len(found["started"]) == len(found["latency"]) == sagas_activity.MINUTES
        assert sum(p["started"] for p in found["started"]) == 0
        assert all(p["p50"] is None for p in found["latency"])
        assert found["steps"] == {}
        assert found["reasons"] == {}
    finally:
        await drop_schema(settings)
