"""One saga's console page over read models the real projector wrote, through HTTP in process
(the browser scenarios are in ``tests/e2e/test_console_saga_page.py``): the path, the
timeline, the audit trail with personal data masked, time travel, a key's page found by the
key alone, and what the page says when there is no trace."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from events.codec import Codec
from events.producer import EventProducer
from events.settings import Settings
from projections.api import create_app
from tests.conftest import ApiTokens
from tests.integration.test_api import T0, read_models_of, serve, timed
from tests.integration.test_projector import INSPECTION_FAILED, SHIPMENT_FAILED, flow, return_flow

pytestmark = pytest.mark.integration

PAGE = "/console/sagas/order/ord-failed"


@pytest.fixture
async def console(
    settings: Settings, codec: Codec, producer: EventProducer, api_tokens: ApiTokens
) -> AsyncIterator[httpx.AsyncClient]:
    """A signed-in console over ``ord-failed`` (shipment failed; events a second apart from
    T0), with no Jaeger trace of it, and ``ret-failed`` (a return whose inspection failed)."""
    failed = timed(flow("ord-failed", SHIPMENT_FAILED), T0) + timed(return_flow("ret-failed"), T0)
    async with (
        read_models_of(settings, codec, producer, failed),
        serve(create_app(settings, api_tokens.api)) as client,
    ):
        signed = await client.post("/console/sign-in", data={"token": api_tokens.viewer})
        assert signed.status_code == 303, signed.text
        yield client


def _state(html: str, node: str) -> str:
    found = re.search(rf'data-node="{node}" data-state="([a-z]*)"', html)
    assert found is not None, node
    return found.group(1)


async def test_the_page_draws_the_path_timeline_and_audit_trail(console: httpx.AsyncClient):
    response = await console.get(PAGE)
    assert response.status_code == 200, response.text
    html = response.text
    assert 'data-testid="saga-status">cancelled<' in html
    assert 'data-testid="saga-reason">shipment failed<' in html
    assert 'href="/console/sagas/order" title="Every order saga" data-testid="type-list"' in html
    assert _state(html, "payment") == "done"
    assert _state(html, "shipping") == "failed"
    assert _state(html, "undo_payment") == "done"
    assert _state(html, "crm") == ""
    refund = html.index('data-row="undo: payment.refund"')
    release = html.index('data-row="undo: inventory.release"')
    assert refund < release
    assert html.count('<tr data-event="') == len(SHIPMENT_FAILED)
    assert "&#34;customer_email&#34;: &#34;***&#34;" in html
    assert "Lovelace" not in html  # the sample customer's name
    assert 'data-live="/console/sagas/order/ord-failed/live"' not in html  # ended: not polled
    # The flow's trace context is logged, but this test published it without exporting spans.
    assert 'data-testid="no-trace">Jaeger has no trace' in html


async def test_time_travel_shows_the_saga_as_it_was(console: httpx.AsyncClient):
    # payment.charged is at T0+3s, shipment.failed at T0+4s.
    then = (T0 + timedelta(seconds=3.5)).isoformat()
    html = (await console.get(PAGE, params={"as_of": then})).text
    assert 'data-testid="saga-status">running<' in html
    assert 'data-testid="current-steps">shipping<' in html
    assert _state(html, "shipping") == "current"
    assert html.count('<tr data-event="') == 4
    assert 'data-testid="as-of-badge"' in html
    live = (await console.get(f"{PAGE}/live", params={"as_of": then})).text
    assert 'data-testid="current-steps">shipping<' in live


async def test_a_key_alone_finds_its_saga_and_an_unknown_one_is_not_found(
    console: httpx.AsyncClient,
):
    found = await console.get("/console/saga/ord-failed")
    assert (found.status_code, found.headers["location"]) == (303, PAGE)
    assert (await console.get("/console/saga/ord-nothing")).status_code == 404
    assert (await console.get("/console/sagas/order/ord-nothing")).status_code == 404
    assert (await console.get("/console/sagas/return/ord-failed")).status_code == 404
    # A browser opening one gets a page saying so, in the console's frame.
    page = await console.get("/console/saga/ord-nothing", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.text
    assert "no saga ord-nothing" in page.text
    assert 'href="/console/approvals"' in page.text
    nowhere = await console.get("/console/nowhere", headers={"Accept": "text/html"})
    assert (nowhere.status_code, "There is no page at /console/nowhere." in nowhere.text) == (
        404,
        True,
    )


async def test_the_orders_menu_name_leads_to_the_orders_list_and_pages(
    console: httpx.AsyncClient,
):
    listed = await console.get("/console/orders", params={"status": "cancelled"})
    assert (listed.status_code, listed.headers["location"]) == (
        307,
        "/console/sagas/order?status=cancelled",
    )
    assert (await console.get("/console/orders")).headers["location"] == "/console/sagas/order"
    one = await console.get("/console/orders/ord-failed")
    assert (one.status_code, one.headers["location"]) == (307, PAGE)
    assert (await console.get(one.headers["location"])).status_code == 200
    odd = await console.get("/console/orders/ord a")
    assert odd.headers["location"] == "/console/sagas/order/ord%20a"  # the key, escaped


async def test_a_return_saga_has_its_page_too(console: httpx.AsyncClient):
    response = await console.get("/console/sagas/return/ret-failed")
    assert response.status_code == 200, response.text
    html = response.text
    assert 'data-testid="saga-status">cancelled<' in html
    assert 'data-testid="saga-reason">inspection failed<' in html
    assert _state(html, "pickup") == "done"
    assert _state(html, "inspection") == "failed"
    # The failed box tells how (the refused restock's reason), not the event that passes it.
    box = html[html.index('data-node="inspection"') :]
    detail = re.search(r'class="detail">([^<]*)<', box[: box.index("</g>")])
    assert detail is not None
    assert detail.group(1) == "✗ damaged: SKU-1"  # the refusal's reason and SKUs
    assert _state(html, "undo_pickup") == "done"
    assert _state(html, "refund") == ""
    assert 'data-row="undo: pickup.cancel"' in html
    assert html.count('<tr data-event="') == len(INSPECTION_FAILED)
    found = await console.get("/console/saga/ret-failed")
    assert found.headers["location"] == "/console/sagas/return/ret-failed"
