"""The console's sagas of every type over read models the real projector wrote, through HTTP in
process: the index of saga types with their counts by status, and one type's list (newest
first, filtered by status, searched, paged by keyset, an operator's buttons on a saga that
waits for a person); and the API's and the CLI's lists, paged by the same keyset."""

from __future__ import annotations

import re
import shlex
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import orjson
import pytest

from events.codec import Codec
from events.producer import EventProducer
from events.settings import Settings
from projections.api import create_app
from tests.conftest import ApiTokens
from tests.integration.test_api import T0, read_models_of, serve, timed
from tests.integration.test_api_saga_answers import waiting_return
from tests.integration.test_cli_checks import _choreo, cli_on
from tests.integration.test_projector import HAPPY, flow, return_flow

pytestmark = pytest.mark.integration

RETURNS = 30
"""Returns whose inspection failed, started a minute apart (``ret-00`` the oldest)."""


@pytest.fixture
async def console(
    settings: Settings, codec: Codec, producer: EventProducer, api_tokens: ApiTokens
) -> AsyncIterator[httpx.AsyncClient]:
    """An operator's console over :data:`RETURNS` cancelled returns, one return waiting for
    approval (started now: the newest) and one completed order."""
    messages = [
        m
        for n in range(RETURNS)
        for m in timed(return_flow(f"ret-{n:02}"), T0 + timedelta(minutes=n))
    ]
    messages += waiting_return("ret-wait") + timed(flow("ord-1", HAPPY), T0)
    async with (
        read_models_of(settings, codec, producer, messages),
        serve(create_app(settings, api_tokens.api)) as client,
    ):
        signed = await client.post("/console/sign-in", data={"token": api_tokens.operator})
        assert signed.status_code == 303, signed.text
        yield client


def _keys(html: str) -> list[str]:
    return re.findall(r'<tr data-saga-type="return" data-saga-key="([^"]+)"', html)


def _chip(html: str, status: str) -> str:
    found = re.search(rf'data-status="{status}">[^<]*<span class="n">([\d,]+)</span>', html)
    assert found is not None, status
    return found.group(1)


async def test_the_index_counts_every_types_sagas_by_status(console: httpx.AsyncClient):
    response = await console.get("/console/sagas")
    assert response.status_code == 200, response.text
    html = response.text
    order, returns = html.split('data-saga-type="return"')
    assert "1 saga ·" in order
    assert _chip(order, "completed") == "1"
    assert f"{RETURNS + 1} sagas" in returns
    assert _chip(returns, "cancelled") == str(RETURNS)
    assert _chip(returns, "awaiting_approval") == "1"
    assert 'href="/console/sagas/return?status=cancelled"' in returns


async def test_a_types_list_pages_newest_first_by_keyset(console: httpx.AsyncClient):
    first = await console.get("/console/sagas/return")
    assert first.status_code == 200, first.text
    keys = _keys(first.text)
    assert keys == ["ret-wait", *[f"ret-{n:02}" for n in range(RETURNS - 1, RETURNS - 25, -1)]]
    assert "page 1 of 2" in first.text
    older = re.search(r'href="\?([^"]+)" data-testid="older"', first.text)
    assert older is not None
    second = await console.get("/console/sagas/return?" + older.group(1).replace("&amp;", "&"))
    assert _keys(second.text) == [f"ret-{n:02}" for n in range(RETURNS - 25, -1, -1)]
    assert "page 2 of 2" in second.text
    newer = re.search(r'href="\?([^"]*)" data-testid="newer"', second.text)  # page 1: no cursor
    assert newer is not None
    back = await console.get("/console/sagas/return?" + newer.group(1).replace("&amp;", "&"))
    assert _keys(back.text) == keys


async def test_a_types_list_filters_searches_and_offers_answers(console: httpx.AsyncClient):
    waiting = await console.get("/console/sagas/return?status=awaiting_approval")
    assert _keys(waiting.text) == ["ret-wait"]
    assert 'data-action="approve" data-saga-type="return" data-saga-key="ret-wait"' in waiting.text
    found = await console.get("/console/sagas/return?q=ret-1")
    assert _keys(found.text) == [f"ret-{n}" for n in range(19, 9, -1)]
    assert "page 1 of 1" in found.text
    assert 'data-action="approve"' not in found.text  # none of them waits for a person
    live = await console.get("/console/live/sagas/return?status=cancelled")
    assert live.status_code == 200
    assert len(_keys(live.text)) == 25
    assert "<html" not in live.text
    # An unknown status lists every status; an unknown type is not found; orders keep their own.
    assert len(_keys((await console.get("/console/sagas/return?status=nope")).text)) == 25
    assert (await console.get("/console/sagas/nope")).status_code == 404
    orders = await console.get("/console/sagas/order")
    assert "<title>Orders" in orders.text


async def test_the_api_and_the_cli_page_the_sagas_by_cursor(
    console: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    first = (await console.get("/sagas", params={"type": "return", "limit": 25})).json()
    keys = [s["saga_key"] for s in first["sagas"]]
    assert keys == ["ret-wait", *[f"ret-{n:02}" for n in range(RETURNS - 1, RETURNS - 25, -1)]]
    assert first["next"] is not None
    rest = (await console.get("/sagas", params={"type": "return", "after": first["next"]})).json()
    assert [s["saga_key"] for s in rest["sagas"]] == [f"ret-{n:02}" for n in range(5, -1, -1)]
    assert rest["next"] is None
    every = (await console.get("/sagas", params={"limit": 1000})).json()
    assert every["count"] == RETURNS + 2  # and the order
    assert every["next"] is None
    found = (await console.get("/sagas", params={"q": "ret-1"})).json()
    assert [s["saga_key"] for s in found["sagas"]] == [f"ret-{n}" for n in range(19, 9, -1)]
    assert first["next"] == keys[-1] == "ret-06"  # a page's next is its last key
    assert (await console.get("/sagas", params={"q": "ret\x00"})).status_code == 422
    assert (await console.get("/console/sagas/return", params={"q": "ret\x00"})).status_code == 422
    nowhere = await console.get("/sagas", params={"after": "nope"})
    assert nowhere.status_code == 404
    assert nowhere.json()["detail"] == "no saga nope to list after"

    with cli_on(settings, monkeypatch):
        listed = await _choreo("sagas", "list", "--type", "return", "--limit", "25")
        assert listed.exit_code == 0, listed.output
        more = listed.stderr.strip().splitlines()[-1]
        assert more.startswith("more: choreo sagas list --type return --limit 25 --after ")
        again = await _choreo(*shlex.split(more.removeprefix("more: choreo ")), "--json")
        assert again.exit_code == 0, again.output
        assert [s["saga_key"] for s in orjson.loads(again.stdout)] == [
            f"ret-{n:02}" for n in range(5, -1, -1)
        ]
        every_type = await _choreo("sagas", "list", "--limit", "25")
        more = every_type.stderr.strip().splitlines()[-1]
        assert more.startswith("more: choreo sagas list --limit 25 --after "), more
        bad = await _choreo("sagas", "list", "--after", "nope")
        assert bad.exit_code == 1
        assert "no saga nope to list after" in bad.output
