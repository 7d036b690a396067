"""The HTTP API on the real database: orders projected by the real projector, then read back."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from events.codec import Codec
from events.database import Database, schema_name
from events.model import Event, Message
from events.producer import EventProducer
from events.settings import Settings
from projections.api import create_app
from projections.projector import Projector
from tests.conftest import ApiTokens
from tests.integration.kafka_helpers import eventually
from tests.integration.test_projector import HAPPY, SHIPMENT_FAILED, flow

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PATHS = {
    "/orders/{order_id}", "/orders", "/orders/{order_id}/history", "/projections", "/summary",
    "/health",
}  # fmt: skip


def timed(messages: list[Message[Event]], start: datetime) -> list[Message[Event]]:
    """The flow with its events one second apart from ``start`` (placed at ``start``), so that
    a time between two events sees exactly the ones before it."""
    out: list[Message[Event]] = []
    for i, message in enumerate(messages):
        event = message.event
        if message.envelope.event_type == "order.placed":
            event = event.model_copy(update={"placed_at": start})
        envelope = message.envelope.model_copy(update={"occurred_at": start + timedelta(seconds=i)})
        out.append(dataclasses.replace(message, envelope=envelope, event=event))
    return out


async def drop_schema(settings: Settings) -> None:
    async with Database(settings) as db:
        await db.pool.execute(f"DROP SCHEMA IF EXISTS {schema_name(settings, 'projector')} CASCADE")


@contextlib.asynccontextmanager
async def read_models_of(
    settings: Settings, codec: Codec, producer: EventProducer, messages: list[Message[Event]]
) -> AsyncIterator[Settings]:
    """The read models the real projector makes of ``messages`` (published first), in the
    schema of ``settings``, which is dropped afterwards."""
    projector = Projector(settings, codec)
    try:
        await producer.publish(messages)
        task = asyncio.create_task(projector.run())
        try:
            await eventually(lambda: projector.stats.events == len(messages), what="projected")
        finally:
            await projector.stop()
            await task
        yield settings
    finally:
        await projector.close()
        await drop_schema(settings)


@contextlib.asynccontextmanager
async def serve(app: FastAPI, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` in process, with the app's lifespan (database pool) around it,
    sending ``token`` as its bearer token."""
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as client,
    ):
        yield client


@pytest.fixture
async def api(
    settings: Settings, codec: Codec, producer: EventProducer, api_tokens: ApiTokens
) -> AsyncIterator[httpx.AsyncClient]:
    """The API over two projected orders: ``ord-happy`` (completed at T0+7s) and
    ``ord-failed`` (placed a minute later, cancelled: shipment failed)."""
    happy = timed(flow("ord-happy", HAPPY), T0)
    failed = timed(flow("ord-failed", SHIPMENT_FAILED), T0 + timedelta(minutes=1))
    async with (
        read_models_of(settings, codec, producer, happy + failed),
        serve(create_app(settings, api_tokens.api), api_tokens.viewer) as client,
    ):
        yield client


async def test_order_status_now_and_as_of_a_past_time(api: httpx.AsyncClient):
    response = await api.get("/orders/ord-happy")
    assert response.status_code == 200, response.text
    order = response.json()
    expected = {
        "status", "cancel_reason", "current_step", "timeline", "progress", "compensations_done",
        "trace_id", "placed_at", "updated_at",
    }  # fmt: skip
    assert expected <= order.keys()
    assert (order["status"], order["cancel_reason"], order["current_step"]) == (
        "completed",
        None,
        None,
    )
    assert order["progress"] == {"done": 5, "expected": 5}
    assert [(s["step"], s["state"]) for s in order["timeline"]] == [
        ("inventory", "succeeded"), ("approval", "skipped"), ("payment", "succeeded"),
        ("shipping", "succeeded"), ("crm", "succeeded"), ("email", "succeeded"),
    ]  # fmt: skip
    assert len(order["trace_id"]) == 32
    assert datetime.fromisoformat(order["placed_at"]) == T0
    assert datetime.fromisoformat(order["updated_at"]) == T0 + timedelta(seconds=7)
    assert order["as_of"] is None

    # payment.charged is at T0+3s, shipment.scheduled at T0+4s.
    as_of = T0 + timedelta(seconds=3.5)
    response = await api.get("/orders/ord-happy", params={"as_of": as_of.isoformat()})
    assert response.status_code == 200, response.text
    then = response.json()
    assert (then["status"], then["current_step"]) == ("paid", "shipping")
    assert then["progress"] == {"done": 2, "expected": 5}
    assert datetime.fromisoformat(then["as_of"]) == as_of
    assert datetime.fromisoformat(then["updated_at"]) == T0 + timedelta(seconds=3)
    # A time without a zone is UTC.
    naive = (T0 + timedelta(seconds=1.5)).replace(tzinfo=None).isoformat()
    response = await api.get("/orders/ord-happy", params={"as_of": naive})
    assert response.json()["status"] == "reserved"
    # Before the order existed there is no order.
    response = await api.get("/orders/ord-happy", params={"as_of": "2024-05-01T11:00:00Z"})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"

    cancelled = (await api.get("/orders/ord-failed")).json()
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "shipment_failed")
    assert cancelled["compensations_done"] == ["inventory.release", "payment.refund"]


async def test_list_and_history(api: httpx.AsyncClient):
    everything = (await api.get("/orders")).json()
    assert [o["order_id"] for o in everything["orders"]] == ["ord-failed", "ord-happy"]
    assert everything["count"] == 2
    completed = (await api.get("/orders", params={"status": "completed"})).json()
    assert [o["order_id"] for o in completed["orders"]] == ["ord-happy"]
    assert (await api.get("/orders", params={"status": "paid"})).json()["orders"] == []
    since = (T0 + timedelta(seconds=30)).isoformat()
    recent = (await api.get("/orders", params={"since": since})).json()
    assert [o["order_id"] for o in recent["orders"]] == ["ord-failed"]
    assert (await api.get("/orders", params={"limit": 1})).json()["count"] == 1

    response = await api.get("/orders/ord-failed/history")
    assert response.status_code == 200, response.text
    history = response.json()
    assert history["order_id"] == "ord-failed"
    assert [e["event_type"] for e in history["events"]] == SHIPMENT_FAILED
    times = [datetime.fromisoformat(e["occurred_at"]) for e in history["events"]]
    assert times == sorted(times)
    assert all(e["summary"] for e in history["events"])
    assert history["events"][-1]["summary"] == "cancelled: shipment_failed"
    assert history["events"][0]["caused_by"] is None
    assert history["events"][1]["caused_by"] == history["events"][0]["event_id"]
    assert all("@" in e["position"] for e in history["events"])


async def test_projections_summary_health_and_openapi(
    api: httpx.AsyncClient, spans: InMemorySpanExporter
):
    projections = (await api.get("/projections")).json()
    status = projections["status"]
    assert status["events"] == len(HAPPY) + len(SHIPMENT_FAILED)
    assert status["total_lag"] == 0
    assert status["lag"]
    assert all(
        p.keys() == {"topic", "partition", "end_offset", "projected", "lag"}
        and p["lag"] == p["end_offset"] - p["projected"] == 0
        for p in status["lag"]
    )
    assert sum(p["end_offset"] for p in status["lag"]) == status["events"]
    assert datetime.fromisoformat(status["last_event_at"]) == T0 + timedelta(minutes=1, seconds=9)
    assert projections["summary"]["orders"] == 2

    summary = (await api.get("/summary")).json()
    assert summary["orders"] == 2
    assert summary["by_status"] == {"cancelled": 1, "completed": 1}
    assert summary["by_cancel_reason"] == {"shipment_failed": 1}
    assert summary["step_duration_ms"]["inventory"] == {"count": 2, "p50": 1000.0, "p95": 1000.0}

    response = await api.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert (health["status"], health["database"], health["projections"]) == ("ok", True, True)
    assert health["version"]
    assert "detail" not in health

    openapi = (await api.get("/openapi.json")).json()
    assert openapi["info"]["title"] == "Choreo API"
    assert openapi["paths"].keys() >= PATHS
    assert (await api.get("/docs")).status_code == 200

    # The maintained FastAPI instrumentation made server spans (with the route template).
    names = {s.name for s in spans.get_finished_spans()}
    assert "GET /orders/{order_id}/history" not in names  # not requested in this test
    await api.get("/orders/ord-happy/history")
    names = {s.name for s in spans.get_finished_spans()}
    assert "GET /orders/{order_id}/history" in names
    # As the API documents it, without the converter that lets a key hold "/".
    assert not [name for name in names if ":key}" in name]
    [server] = [s for s in spans.get_finished_spans() if s.name == "GET /orders/{order_id}/history"]
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/orders/{order_id}/history"


async def test_errors_are_json_with_an_error_code(api: httpx.AsyncClient):
    response = await api.get("/orders/ord-x")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "no order ord-x"}
    response = await api.get("/orders/ord-x/history")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert (await api.get("/nowhere")).json()["error"] == "not_found"

    cases: list[tuple[dict[str, str | int], str]] = [
        ({"status": "bogus"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"since": "yesterday"}, "since"),
        # A number is not the ISO 8601 time the document promises, though pydantic alone
        # would read it as Unix seconds (found by the fuzz test).
        ({"since": "2803967950"}, "since"),
        ({"since": "-1.5e9"}, "since"),
    ]
    for params, field in cases:
        response = await api.get("/orders", params=params)
        assert response.status_code == 422, params
        body = response.json()
        assert body["error"] == "invalid_request"
        assert [f["field"] for f in body["fields"]] == [field]
        assert body["detail"].startswith(f"{field}: ")
    body = (await api.get("/orders", params={"status": "bogus"})).json()
    assert "placed, awaiting_approval" in body["detail"]
    # A NUL, which PostgreSQL cannot store: refused as the parameter it is in, not a 503.
    # So is an offset beyond PostgreSQL's bigint (found by the fuzz test).
    for url, field in (
        ("/sagas?type=or%00der", "type"),
        ("/orders/ord%00x", "order_id"),
        ("/orders?offset=9223372036854775809", "offset"),
    ):
        response = await api.get(url)
        assert response.status_code == 422, url
        assert response.json()["error"] == "invalid_request"
        assert [f["field"] for f in response.json()["fields"]] == [field]
    response = await api.get("/orders/ord-happy", params={"as_of": "not a time"})
    assert response.status_code == 422
    assert response.json()["fields"][0] == {
        "field": "as_of", "location": "query", "message": response.json()["fields"][0]["message"],
    }  # fmt: skip


async def test_unavailable_without_read_models_or_database(
    settings: Settings, api_tokens: ApiTokens
):
    """Before the projector created its tables, and with PostgreSQL down: 503, JSON."""
    async with serve(create_app(settings, api_tokens.api), api_tokens.viewer) as client:
        response = await client.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert (body["status"], body["database"], body["projections"]) == (
            "unavailable",
            True,
            False,
        )
        response = await client.get("/orders/ord-x")
        assert response.status_code == 503
        assert response.json()["error"] == "not_ready"

    down = settings.model_copy(update={"database_url": "postgresql://choreo:choreo@127.0.0.1:1/x"})
    async with serve(create_app(down, api_tokens.api), api_tokens.viewer) as client:
        response = await client.get("/health")
        assert response.status_code == 503
        assert (response.json()["database"], response.json()["projections"]) == (False, False)
        response = await client.get("/summary")
        assert response.status_code == 503
        assert response.json()["error"] == "unavailable"
        assert response.json()["detail"] == (
            "cannot connect to PostgreSQL at 127.0.0.1:1: nothing is listening there."
        )
        assert response.headers["retry-after"] == "5"

    # A console page a browser opens: the same outage as a page that loads itself again.
    async with serve(create_app(down, api_tokens.api)) as browser:
        signed = await browser.post("/console/sign-in", data={"token": api_tokens.viewer})
        assert signed.status_code == 303, signed.text
        page = await browser.get("/console/sagas/order", headers={"Accept": "text/html"})
        assert page.status_code == 503
        assert page.headers["retry-after"] == "5"
        assert '<meta http-equiv="refresh" content="5">' in page.text
        assert "<h1>Not available right now</h1>" in page.text
        assert "cannot connect to PostgreSQL at 127.0.0.1:1: nothing is listening" in page.text
        assert 'href="/console/approvals"' in page.text  # in the console's frame
        # What a page fetches to refresh a region stays JSON (the region is marked stale).
        fragment = await browser.get("/console/live/overview", headers={"Accept": "*/*"})
        assert (fragment.status_code, fragment.json()["error"]) == (503, "unavailable")


async def test_a_console_session_outlives_a_restart_of_the_api(
    settings: Settings, api_tokens: ApiTokens
):
    # Two apps over the same state folder, one after the other: a restart by the supervisor.
    # With a key drawn per start, the second refused the first's cookie (401).
    async with serve(create_app(settings, api_tokens.api)) as browser:
        signed = await browser.post("/console/sign-in", data={"token": api_tokens.viewer})
        assert signed.status_code == 303, signed.text
        cookies = browser.cookies
    async with serve(create_app(settings, api_tokens.api)) as again:
        again.cookies = cookies
        me = await again.get("/auth/me")
        assert me.status_code == 200, me.text
        assert me.json()["name"] == "test-viewer"
