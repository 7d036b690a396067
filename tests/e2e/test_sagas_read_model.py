"""The generic saga read model on the real platform: a happy order and one whose shipment
fails, as `/sagas/order/{id}` and `choreo sagas status order ID --json` show them."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from contracts.return_samples import scenario_return
from projections import sagas_queries
from projections.api import create_app
from projections.queries import Queries
from tests.conftest import ApiTokens
from tests.e2e.conftest import Deployment, start_deployment
from tests.integration.test_api import serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment({}, "sagas"):
        yield d


async def _ended(
    api: httpx.AsyncClient, saga_key: str, saga_type: str = "order", timeout: float = 60
) -> dict[str, Any]:
    """The saga's row once the projector has its ending."""
    deadline = time.monotonic() + timeout
    while True:
        response = await api.get(f"/sagas/{saga_type}/{saga_key}")
        if response.status_code == 200 and response.json()["ended_at"] is not None:
            found: dict[str, Any] = response.json()
            return found
        assert time.monotonic() < deadline, f"{saga_key}: {response.status_code} {response.text}"
        await asyncio.sleep(0.2)


async def _cli(d: Deployment, *args: str) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "choreo", "sagas", *args, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **d.platform.env},
    )  # fmt: skip
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode() + stdout.decode()
    return orjson.loads(stdout)


async def test_a_happy_and_a_failed_shipment_order_as_sagas(
    checked: Deployment, api_tokens: ApiTokens
):
    happy = await checked.place("happy")
    unshippable = await checked.place("unshippable")
    for order_id in (happy, unshippable):
        await checked.wait_for(order_id)
    # A return of the happy order starts with its order_id: the order's row is named by it.
    returned = (await checked.client.start_saga("return", scenario_return("happy", happy))).saga_key
    app = create_app(checked.settings, api_tokens.api)
    async with serve(app, api_tokens.viewer) as api:
        ret = await _ended(api, returned, "return")
        done = await _ended(api, happy)
        failed = await _ended(api, unshippable)
        listed = (await api.get("/sagas", params={"type": "order", "status": "cancelled"})).json()
        history = (await api.get(f"/sagas/order/{unshippable}/history")).json()
        missing = await api.get("/sagas/order/ord-nope")
    assert (done["status"], done["progress"], done["current_steps"]) == (
        "completed", {"done": 5, "expected": 5}, []
    )  # fmt: skip
    assert done["compensations"] == []
    assert ret["status"] == "completed"
    assert done["named_by"] == [
        {"saga_type": "return", "saga_key": returned, "status": "completed"}
    ]
    assert failed["named_by"] == []
    assert (failed["status"], failed["reason"]) == ("cancelled", "shipment_failed")
    shipping = next(s for s in failed["steps"] if s["step"] == "shipping")
    assert (shipping["state"], shipping["finished_by"]) == ("failed", "shipment.failed")
    assert failed["progress"] == {"done": 3, "expected": 4}  # inventory, payment, shipping; crm
    assert [(c["step"], c["command"], c["attempts"]) for c in failed["compensations"]] == [
        ("payment", "payment.refund", 1),
        ("inventory", "inventory.release", 1),
    ]
    assert all(c["acknowledged_at"] >= c["sent_at"] for c in failed["compensations"])
    assert unshippable in [s["saga_key"] for s in listed["sagas"]]
    assert happy not in [s["saga_key"] for s in listed["sagas"]]
    assert history["events"][0]["event_type"] == "order.placed"
    assert "order.cancelled" in [e["event_type"] for e in history["events"]]
    assert missing.status_code == 404
    # The order read model is unchanged and agrees.
    queries = Queries(checked.db, checked.settings)
    order = await queries.status(unshippable)
    assert order is not None
    assert (order["status"], order["cancel_reason"]) == (failed["status"], failed["reason"])
    # The CLI reads the same rows (the API writes its times with a Z).
    by_cli = await _cli(checked, "status", "order", unshippable)
    row = await sagas_queries.saga(queries, "order", unshippable)
    assert row is not None
    assert by_cli == {**row, "named_by": []}
    assert (await _cli(checked, "status", "order", happy))["named_by"] == done["named_by"]
    assert (by_cli["status"], by_cli["progress"]) == (failed["status"], failed["progress"])
    listed_by_cli = await _cli(checked, "list", "--type", "order")
    assert {happy, unshippable} <= {s["saga_key"] for s in listed_by_cli}
