"""The redrive audit on the real broker and database: a redrive through the API writes who,
when and which letters; viewers read it; a redrive of nothing records nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from events.codec import Codec
from events.database import Database
from events.dlq import dead_letter
from events.errors import TransientError
from events.producer import EventProducer
from events.settings import Settings
from events.topics import topic_for
from projections import API
from projections.api import create_app
from tests.conftest import ApiTokens
from tests.integration.test_api import serve
from tests.integration.test_projector import flow

pytestmark = pytest.mark.integration


async def send_letter(
    settings: Settings, codec: Codec, producer: EventProducer, order_id: str = "ord-dl"
) -> None:
    """One dead letter (an order.placed the inventory gave up on) in this test's DLQ topic."""
    placed = flow(order_id, ["order.placed"])[0]
    record = dead_letter(
        error=TransientError("stock service unavailable"),
        consumer=f"{settings.topic_prefix}inventory",
        topic=topic_for("order.placed", settings),
        partition=0,
        offset=0,
        key=order_id.encode(),
        value=codec.encode(placed),
        headers=[],
        attempts=4,
        event_type="order.placed",
    ).to_record(settings.dlq_topic)
    await producer.send_records([record])


@pytest.fixture
async def letter(
    settings: Settings, codec: Codec, producer: EventProducer
) -> AsyncIterator[Settings]:
    """:func:`send_letter`'s letter, and the redrive audit's schema dropped after."""
    await send_letter(settings, codec, producer)
    try:
        yield settings
    finally:
        async with Database(settings) as db:
            await db.pool.execute(f"DROP SCHEMA IF EXISTS {API.schema(settings)} CASCADE")


async def test_a_redrive_is_audited_and_viewers_read_the_audit(
    letter: Settings, api_tokens: ApiTokens
):
    app = create_app(letter, api_tokens.api)
    async with serve(app) as anonymous:
        for path in ("/dead-letters/redrives", "/approvals"):
            response = await anonymous.get(path)
            assert response.status_code == 401, path
            assert response.json()["error"] == "unauthorized"
    async with serve(app, api_tokens.viewer) as viewer:
        assert (await viewer.get("/dead-letters/redrives")).json() == {"redrives": [], "count": 0}
        assert (await viewer.post("/dead-letters/redrive", json={"all": True})).status_code == 403
    async with serve(app, api_tokens.operator) as operator:
        pending = (await operator.get("/dead-letters")).json()["dead_letters"]
        assert [p["order_id"] for p in pending] == ["ord-dl"]
        response = await operator.post("/dead-letters/redrive", json={"ids": [pending[0]["id"]]})
        assert response.status_code == 200, response.text
        done = response.json()
        assert done["ids"] == [pending[0]["id"]]
        assert isinstance(done["audit_id"], int)
        # Nothing pending any more: a redrive of all redrives nothing and records nothing.
        nothing = (await operator.post("/dead-letters/redrive", json={"all": True})).json()
        assert nothing == {"ids": [], "by": "test-operator", "audit_id": None}
    async with serve(app, api_tokens.viewer) as viewer:
        audit = (await viewer.get("/dead-letters/redrives")).json()
    assert audit["count"] == 1
    (row,) = audit["redrives"]
    assert row["id"] == done["audit_id"]
    assert row["redriven_by"] == "test-operator"
    assert row["token_id"] == api_tokens.operator.split("_")[1]
    assert row["letters"] == [
        {
            "id": pending[0]["id"],
            "event_type": "order.placed",
            "order_id": "ord-dl",
            "source_topic": topic_for("order.placed", letter),
            "consumer": f"{letter.topic_prefix}inventory",
            "reason": "stock service unavailable",
        }
    ]
