"""A saga key may hold "/" (a business key such as an invoice number: Choreo accepts any text
but NUL). Its saga is served like any other, by the API and by the console, its URLs with the
key escaped; the routes of a saga's parts (its history, live fragment, trace, answers) are not
taken for a longer key, and no list's route for a key ("live"); a key ending in a part's name
("inv/history") is its own saga when its "/" is escaped, as the console's links escape it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from events.codec import Codec
from events.producer import EventProducer
from events.settings import Settings
from projections.api import create_app
from tests.conftest import ApiTokens
from tests.integration.test_api import T0, read_models_of, serve, timed
from tests.integration.test_projector import HAPPY, flow

pytestmark = pytest.mark.integration

KEY = "inv/2026/0001"
ESCAPED = quote(KEY, safe="")  # inv%2F2026%2F0001
ODD = "inv?7 #2"
"""A key with characters a URL gives meanings to."""
PART = "inv/history"
"""A key that, its "/" bare, is the history of the key ``inv``."""
PERCENT = "50%2F"
"""A key holding the text of an escaped "/"."""


@pytest.fixture
async def clients(
    settings: Settings, codec: Codec, producer: EventProducer, api_tokens: ApiTokens
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The API (a viewer's token) and a signed-in console over completed orders keyed
    :data:`KEY`, ``inv`` (its key's first segment), ``live``, :data:`ODD`, :data:`PART` and
    :data:`PERCENT`."""
    keys = (KEY, "inv", "live", ODD, PART, PERCENT)
    orders = [m for key in keys for m in timed(flow(key, HAPPY), T0)]
    async with (
        read_models_of(settings, codec, producer, orders),
        serve(create_app(settings, api_tokens.api), api_tokens.viewer) as api,
        serve(create_app(settings, api_tokens.api)) as console,
    ):
        signed = await console.post("/console/sign-in", data={"token": api_tokens.viewer})
        assert signed.status_code == 303, signed.text
        yield api, console


async def test_the_api_serves_a_saga_whose_key_holds_a_slash(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    api, _ = clients
    saga = await api.get(f"/sagas/order/{ESCAPED}")
    assert saga.status_code == 200, saga.text
    assert (saga.json()["saga_key"], saga.json()["status"]) == (KEY, "completed")
    history = await api.get(f"/sagas/order/{ESCAPED}/history")
    assert history.status_code == 200, history.text
    assert history.json()["saga_key"] == KEY
    assert [e["event_type"] for e in history.json()["events"]] == list(HAPPY)
    order = await api.get(f"/orders/{ESCAPED}")
    assert (order.status_code, order.json()["order_id"]) == (200, KEY)
    order_history = await api.get(f"/orders/{ESCAPED}/history")
    assert order_history.status_code == 200, order_history.text
    assert len(order_history.json()["events"]) == len(HAPPY)
    # Its first segment is another saga's whole key, served as that one.
    assert (await api.get("/sagas/order/inv")).json()["saga_key"] == "inv"
    missing = await api.get(f"/sagas/order/{quote('inv/2026/9999', safe='')}")
    assert missing.status_code == 404
    assert "inv/2026/9999" in missing.json()["detail"]
    # Any text at all: a line break reaches the saga's route too (and finds no such saga).
    line_break = quote("inv\n1", safe="")
    broken = await api.get(f"/sagas/order/{line_break}")
    assert (broken.status_code, broken.json()["detail"]) == (404, "no order saga inv\n1")


async def test_an_answer_to_it_reaches_its_saga(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    api, _ = clients
    # A viewer may not answer; the route is the answer's, not the saga's with a longer key.
    refused = await api.post(f"/sagas/order/{ESCAPED}/approve")
    assert refused.status_code == 403, refused.text


async def test_the_console_serves_its_page_and_parts(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, console = clients
    page = await console.get(f"/console/sagas/order/{ESCAPED}")
    assert page.status_code == 200, page.text
    assert 'data-testid="saga-status">completed<' in page.text
    assert KEY in page.text
    live = await console.get(f"/console/sagas/order/{ESCAPED}/live")
    assert live.status_code == 200, live.text
    assert 'data-testid="saga-status">completed<' in live.text
    trace = await console.get(f"/console/sagas/order/{ESCAPED}/trace")
    assert trace.status_code == 200, trace.text
    by_key = await console.get(f"/console/saga/{ESCAPED}")
    assert (by_key.status_code, by_key.headers["location"]) == (
        303,
        f"/console/sagas/order/{ESCAPED}",
    )
    by_menu = await console.get(f"/console/orders/{ESCAPED}")
    assert (by_menu.status_code, by_menu.headers["location"]) == (
        307,
        f"/console/sagas/order/{ESCAPED}",
    )


async def test_a_key_is_no_lists_route_and_its_page_links_escape_it(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, console = clients
    live = await console.get("/console/sagas/order/live")
    assert live.status_code == 200, live.text
    assert "<title>order live" in live.text  # the order keyed "live", not the list's part
    listed = await console.get("/console/live/sagas/order")  # the orders list's live part
    assert (listed.status_code, 'data-order="live"' in listed.text) == (200, True)
    assert f'href="/console/sagas/order/{quote(ODD)}"' in listed.text
    assert (
        'data-live="/console/live/sagas/order?' in (await console.get("/console/sagas/order")).text
    )
    odd = quote(ODD)  # as the templates escape it: inv%3F7%20%232
    page = await console.get(f"/console/sagas/order/{odd}")
    assert page.status_code == 200, page.text
    assert f'href="/console/sagas/order/{odd}" data-testid="now"' not in page.text  # not as_of
    assert f'action="/console/sagas/order/{odd}"' in page.text
    trace = await console.get(f"/console/sagas/order/{odd}/trace")
    assert trace.status_code == 200, trace.text


async def test_a_key_ending_in_a_parts_name_is_its_own_saga_when_escaped(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], spans: InMemorySpanExporter
) -> None:
    api, console = clients
    escaped = quote(PART, safe="")  # inv%2Fhistory
    spans.clear()
    saga = await api.get(f"/sagas/order/{escaped}")
    assert (saga.status_code, saga.json()["saga_key"]) == (200, PART), saga.text
    # Its request's span is named by the route that served it, not the history's.
    [server] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.name == "GET /sagas/{saga_type}/{saga_key}"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/sagas/{saga_type}/{saga_key}"
    assert (await api.get(f"/orders/{escaped}")).json()["order_id"] == PART
    own_history = await api.get(f"/sagas/order/{escaped}/history")
    assert own_history.json()["saga_key"] == PART
    # Its "/" bare, the path is the shorter key's history, as the API documents.
    assert (await api.get(f"/sagas/order/{PART}")).json()["saga_key"] == "inv"
    assert "events" in (await api.get(f"/orders/{PART}")).json()
    # Lowercase escapes are the same key; the text "%2F" in a key stays text.
    assert (await api.get("/sagas/order/inv%2fhistory")).json()["saga_key"] == PART
    percent = await api.get(f"/sagas/order/{quote(PERCENT, safe='')}")  # 50%252F
    assert (percent.status_code, percent.json()["saga_key"]) == (200, PERCENT), percent.text
    # The console: its page, its links escaping the "/", and its parts.
    page = await console.get(f"/console/sagas/order/{escaped}")
    assert page.status_code == 200, page.text
    assert f"<title>order {PART}" in page.text
    assert f'action="/console/sagas/order/{escaped}"' in page.text  # time travel
    live = await console.get(f"/console/sagas/order/{escaped}/live")
    assert (live.status_code, PART in live.text) == (200, True)
    listed = await console.get("/console/live/sagas/order")
    assert f'href="/console/sagas/order/{escaped}"' in listed.text
    by_key = await console.get(f"/console/saga/{escaped}")
    assert by_key.headers["location"] == f"/console/sagas/order/{escaped}"
    # A type holding an escaped "/" is no type: 404, not a key.
    assert (await api.get(f"/sagas/or%2Fder/{escaped}")).status_code == 404
    assert (await console.get("/console/sagas/or%2Fder")).status_code == 404
