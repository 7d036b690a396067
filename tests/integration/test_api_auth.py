"""Sign-in and roles on the HTTP API, and the operator's actions (approve, reject, redrive),
on the real database and broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.catalog import OrderApproved
from events.codec import Codec
from events.headers import header
from events.producer import EventProducer
from events.settings import Settings
from events.topics import topic_for
from projections.api import create_app
from projections.tokens import ApiSettings, TokenFile
from tests.conftest import ApiTokens
from tests.integration.kafka_helpers import read_records
from tests.integration.test_api import read_models_of, serve
from tests.integration.test_projector import HAPPY, flow

pytestmark = pytest.mark.integration

WAITING = ["order.placed", "inventory.reserved", "order.approval_requested"]


@pytest.fixture
async def app_settings(
    settings: Settings, codec: Codec, producer: EventProducer
) -> AsyncIterator[Settings]:
    """Read models with ``ord-wait`` (awaiting approval) and ``ord-done`` (completed)."""
    messages = flow("ord-wait", WAITING) + flow("ord-done", HAPPY)
    async with read_models_of(settings, codec, producer, messages):
        yield settings


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_data_endpoint_needs_a_token(app_settings: Settings, api_tokens: ApiTokens):
    async with serve(create_app(app_settings, api_tokens.api)) as api:
        for method, path in [
            ("GET", "/orders"),
            ("GET", "/orders/ord-wait"),
            ("GET", "/summary"),
            ("GET", "/dead-letters"),
            ("GET", "/auth/me"),
            ("POST", "/orders/ord-wait/approve"),
            ("POST", "/dead-letters/redrive"),
        ]:
            response = await api.request(method, path)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        wrong = api_tokens.viewer[:-4] + "xxxx"
        response = await api.get("/orders", headers=_bearer(wrong))
        assert response.json() == {"error": "unauthorized", "detail": "invalid or revoked token"}
        response = await api.get("/orders", headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert response.status_code == 401
        # What stays open: health, the API's description and docs, the sign-in page.
        assert (await api.get("/health")).status_code == 200
        openapi = (await api.get("/openapi.json")).json()
        assert openapi["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert (await api.get("/docs")).status_code == 200
        assert (await api.get("/console/sign-in")).status_code == 200
        response = await api.get("/console")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/sign-in?next=")


async def test_a_viewer_reads_but_may_not_act(app_settings: Settings, api_tokens: ApiTokens):
    async with serve(create_app(app_settings, api_tokens.api), api_tokens.viewer) as api:
        assert (await api.get("/orders")).json()["total"] == 2
        assert (await api.get("/auth/me")).json() == {
            "name": "test-viewer",
            "role": "viewer",
            "token_id": api_tokens.viewer.split("_")[1],
            "saga_types": None,
        }
        assert (await api.get("/dead-letters")).json() == {"dead_letters": [], "count": 0}
        for path, body in [
            ("/orders/ord-wait/approve", {}),
            ("/orders/ord-wait/reject", {"reason": "no"}),
            ("/dead-letters/redrive", {"all": True}),
        ]:
            response = await api.post(path, json=body)
            assert response.status_code == 403, path
            assert response.json() == {
                "error": "forbidden",
                "detail": "test-viewer is a viewer; this needs operator",
            }


async def test_an_operator_approves_in_the_orders_trace(
    app_settings: Settings, api_tokens: ApiTokens, codec: Codec
):
    async with serve(create_app(app_settings, api_tokens.api), api_tokens.operator) as api:
        response = await api.post("/orders/ord-done/approve")
        assert response.status_code == 409
        assert response.json() == {
            "error": "conflict",
            "detail": "order ord-done is completed: it waits for no one's answer",
        }
        response = await api.post("/orders/ord-none/approve")
        assert (response.status_code, response.json()["detail"]) == (404, "no order saga ord-none")
        response = await api.post("/orders/ord-wait/reject", json={})
        assert response.status_code == 422
        assert response.json()["fields"][0]["field"] == "reason"
        response = await api.post("/orders/ord-wait/approve", json={"reason": "known customer"})
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert (accepted["decision"], accepted["by"]) == ("approved", "test-operator")
        assert (await api.post("/dead-letters/redrive", json={"ids": ["0:7"]})).status_code == 404
        assert (await api.post("/dead-letters/redrive", json={})).status_code == 422

    order_topic = topic_for("order.approved", app_settings)
    on_topic = [t for t in WAITING + HAPPY if topic_for(t, app_settings) == order_topic]
    records = await read_records(app_settings, [order_topic], count=len(on_topic) + 1)
    found = {}
    for r in records:
        message = codec.decode(r.value)
        if r.key == b"ord-wait":
            found[message.envelope.event_type] = (message, header(r.headers, "traceparent"))
    approved, traceparent = found["order.approved"]
    assert str(approved.envelope.event_id) == accepted["event_id"]
    assert approved.envelope.producer == "api"
    assert isinstance(approved.event, OrderApproved)
    assert (approved.event.approved_by, approved.event.reason) == (
        "test-operator",
        "known customer",
    )
    placed_traceparent = found["order.placed"][1]
    assert traceparent.split("-")[1] == placed_traceparent.split("-")[1]  # the same trace


async def test_a_console_session_needs_csrf_for_writes_and_ends(
    app_settings: Settings, api_tokens: ApiTokens
):
    async with serve(create_app(app_settings, api_tokens.api)) as api:
        response = await api.post("/auth/session", json={"token": "choreo_x_y"})
        assert response.status_code == 401
        response = await api.post("/auth/session", json={"token": api_tokens.operator})
        assert response.json()["role"] == "operator"
        assert "choreo_session" in api.cookies
        assert (await api.get("/auth/me")).json()["name"] == "test-operator"
        response = await api.post("/orders/ord-wait/approve")
        assert response.status_code == 403
        assert "X-Choreo-CSRF" in response.json()["detail"]
        assert (await api.delete("/auth/session")).status_code == 204
        assert (await api.get("/auth/me")).status_code == 401


async def test_tokens_from_the_file_count_at_once_and_revoking_ends_them(
    settings: Settings, tmp_path
):
    file = TokenFile(tmp_path / "tokens.json")
    api_settings = ApiSettings(tokens_file=file.path)
    async with serve(create_app(settings, api_settings)) as api:
        response = await api.get("/auth/me")
        assert "no API tokens configured" in response.json()["detail"]
        token, record = file.create("ann", "operator")
        assert (await api.get("/auth/me", headers=_bearer(token))).json()["name"] == "ann"
        await api.post("/auth/session", json={"token": token})
        assert (await api.get("/auth/me")).status_code == 200
        file.revoke(record.id)
        assert (await api.get("/auth/me", headers=_bearer(token))).status_code == 401
        assert (await api.get("/auth/me")).status_code == 401  # the session ended with it


async def test_the_saga_endpoints_need_a_token_and_let_a_viewer_read(
    app_settings: Settings, api_tokens: ApiTokens
):
    paths = ["/sagas", "/sagas/order/ord-x", "/sagas/order/ord-x/history"]
    async with serve(create_app(app_settings, api_tokens.api)) as api:
        for path in paths:
            response = await api.get(path)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"] == "unauthorized"
        viewer = _bearer(api_tokens.viewer)
        assert (await api.get("/sagas", headers=viewer)).status_code == 200
        for path in paths[1:]:
            response = await api.get(path, headers=viewer)
            assert response.status_code == 404, (path, response.text)
            assert response.json() == {"error": "not_found", "detail": "no order saga ord-x"}
