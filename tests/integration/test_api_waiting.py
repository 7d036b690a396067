"""`GET /sagas/waiting`: the sagas of every type a person's answer is awaited by, from the
read models the real projector makes, the soonest to expire first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts.samples import EXAMPLES
from events.codec import Codec
from events.database import Database
from events.model import Event, Message
from events.producer import EventProducer
from events.settings import Settings
from projections import waiting
from projections.api import create_app
from projections.queries import Queries
from sagas.shipped import SAGAS
from tests.conftest import ApiTokens
from tests.integration.test_api import read_models_of, serve
from tests.integration.test_api_saga_answers import waiting_return
from tests.integration.test_projector import flow, return_flow

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def waiting_order(order_id: str, expires_in: timedelta) -> list[Message[Event]]:
    """An order over the approval threshold, its request expiring ``expires_in`` from now."""
    first: Message[Event] = Message.first(
        EXAMPLES["order.placed"], saga_type="order", saga_key=order_id, producer="test"
    )
    request = EXAMPLES["order.approval_requested"].model_copy(
        update={"requested_at": NOW - timedelta(minutes=5), "expires_at": NOW + expires_in}
    )
    return [first, first.caused(request, producer="test")]


def escalated_order(order_id: str) -> list[Message[Event]]:
    """An order whose approval timed out and was escalated: it needs attention and waits on
    (the catalog's request expired on 2025-03-14)."""
    first: Message[Event] = Message.first(
        EXAMPLES["order.placed"], saga_type="order", saga_key=order_id, producer="test"
    )
    asked = first.caused(EXAMPLES["order.approval_requested"], producer="test")
    escalated = EXAMPLES["order.needs_attention"].model_copy(
        update={"step": "approval", "reason": "approval_timeout"}
    )
    return [first, asked, asked.caused(escalated, producer="test")]


def stuck_order(order_id: str) -> list[Message[Event]]:
    """An order that needs attention for a refund that failed: nobody's answer is awaited."""
    return flow(order_id, ["order.placed", "inventory.reserved", "order.approved",
                           "payment.charged", "shipment.failed", "payment.refund",
                           "order.needs_attention"])  # fmt: skip


@pytest.fixture
async def inbox(
    settings: Settings, codec: Codec, producer: EventProducer
) -> AsyncIterator[Settings]:
    """Two orders (expiring in an hour and in a minute), a return (expired in 2025) and an
    escalated order that wait for a person; a return that ended, and an order that needs
    attention for a failed refund."""
    messages = (
        waiting_order("ord-late", timedelta(hours=1))
        + waiting_order("ord-soon", timedelta(minutes=1))
        + waiting_return("ret-wait")
        + return_flow("ret-done")
        + escalated_order("ord-esc")
        + stuck_order("ord-stuck")
    )
    async with read_models_of(settings, codec, producer, messages):
        yield settings


async def test_every_saga_waiting_for_a_person_soonest_to_expire_first(
    inbox: Settings, api_tokens: ApiTokens
):
    async with serve(create_app(inbox, api_tokens.api), api_tokens.viewer) as api:
        response = await api.get("/sagas/waiting")
        assert response.status_code == 200, response.text
        answer = response.json()
        keys = [(w["saga"]["saga_type"], w["saga"]["saga_key"]) for w in answer["waiting"]]
        assert keys == [
            ("order", "ord-esc"),
            ("return", "ret-wait"),
            ("order", "ord-soon"),
            ("order", "ord-late"),
        ]
        assert (answer["count"], answer["total"]) == (4, 4)
        esc = answer["waiting"][0]
        assert (esc["escalated"], esc["saga"]["status"], esc["task"]) == (
            True,
            "needs_attention",
            "approval",
        )
        ret = answer["waiting"][1]
        assert ret["escalated"] is False
        assert ret["task"] == "approval"
        assert ret["saga"]["status"] == "awaiting_approval"
        assert ret["on_timeout"] == "reject"
        assert ret["expires_at"].startswith("2025-03-20T15:02:07.250")
        assert ret["amounts"] == [
            {"name": "refund", "minor": 250_000, "currency": "EUR"},
            {"name": "threshold", "minor": 100_000, "currency": "EUR"},
        ]
        soon = answer["waiting"][2]
        assert datetime.fromisoformat(soon["requested_at"]) < NOW
        assert soon["amounts"][0] == {"name": "total", "minor": 250_000, "currency": "EUR"}

        only = (await api.get("/sagas/waiting", params={"type": "order", "limit": 1})).json()
        assert [w["saga"]["saga_key"] for w in only["waiting"]] == ["ord-esc"]
        assert (only["count"], only["total"]) == (1, 3)
        # The overview's count: the stuck order needs attention but waits for no answer.
        async with Database(inbox, max_size=1) as db:
            assert await waiting.count(Queries(db, inbox), SAGAS) == 4
        assert (await api.get("/sagas/waiting", params={"limit": 0})).status_code == 422


async def test_the_orders_approvals_are_the_inboxs_orders(inbox: Settings, api_tokens: ApiTokens):
    async with serve(create_app(inbox, api_tokens.api), api_tokens.viewer) as api:
        response = await api.get("/approvals")
        assert response.status_code == 200, response.text
        answer = response.json()
    orders = [a["order"] for a in answer["approvals"]]
    # The soonest to expire first, the escalated order too; the return is not an order.
    assert [o["order_id"] for o in orders] == ["ord-esc", "ord-soon", "ord-late"]
    assert (answer["count"], answer["total"]) == (3, 3)
    assert [o["status"] for o in orders] == ["needs_attention", *["awaiting_approval"] * 2]
    soon = answer["approvals"][1]
    assert (
        soon["threshold_minor"]
        == EXAMPLES["order.approval_requested"].model_dump()["threshold_minor"]
    )
    assert (
        datetime.fromisoformat(soon["requested_at"])
        < NOW
        < datetime.fromisoformat(soon["expires_at"])
    )
    assert orders[1]["total_minor"] == EXAMPLES["order.placed"].model_dump()["total_minor"]


async def test_the_approvals_page_marks_an_escalated_request(
    inbox: Settings, api_tokens: ApiTokens
):
    async with serve(create_app(inbox, api_tokens.api)) as client:
        signed = await client.post("/console/sign-in", data={"token": api_tokens.viewer})
        assert signed.status_code == 303, signed.text
        page = (await client.get("/console/approvals")).text
    rows = page.split("<tr data-saga-type=")[1:]
    assert rows[0].startswith('"order" data-saga-key="ord-esc"')
    assert 'data-testid="escalated"' in rows[0]
    assert not any('data-testid="escalated"' in row for row in rows[1:])
    assert "ord-stuck" not in page
