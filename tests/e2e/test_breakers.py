"""A provider outage on the real platform: the payment gateway fails every call for a few
seconds (injected with `choreo faults inject`, as a person would); its circuit breaker opens,
the charges wait in the retry queue instead of being dead-lettered, half-open probes close it,
and every order completes."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from events.breaker_board import BreakerRow, read_breakers
from events.database import schema_name
from tests.e2e.conftest import Deployment, start_deployment

pytestmark = pytest.mark.integration

OUTAGE_S = 4.0
ENV = {
    "CHOREO_BREAKER_GATEWAY_FAILURE_THRESHOLD": "3",
    "CHOREO_BREAKER_GATEWAY_COOL_DOWN_S": "1",
    "CHOREO_BREAKER_PUBLISH_INTERVAL_MS": "200",
}


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment(ENV, "breakers"):
        yield d


async def choreo(deployment: Deployment, *args: str) -> str:
    """Run the `choreo` CLI against the deployment; its stdout."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "choreo", *args,
        env={**os.environ, "CHOREO_TOPIC_PREFIX": deployment.settings.topic_prefix},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    return stdout.decode()


async def gateway(deployment: Deployment) -> BreakerRow:
    rows = [r for r in await read_breakers(deployment.db, deployment.settings) if not r.stale]
    [row] = [r for r in rows if r.provider == "gateway"]
    return row


async def watch_gateway(deployment: Deployment, until: str, timeout: float = 30) -> list[str]:
    """The gateway breaker's states as published, polled until it is ``until``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        row = await gateway(deployment)
        if not seen or seen[-1] != row.state:
            seen.append(row.state)
        if row.state == until:
            return seen
        assert time.monotonic() < deadline, f"gateway breaker never {until}: {seen}"
        await asyncio.sleep(0.05)


async def test_a_gateway_outage_opens_the_breaker_dead_letters_nothing_and_orders_complete(
    checked: Deployment,
):
    before = await checked.place("happy")
    assert (await checked.wait_for(before)).status == "completed"
    assert (await gateway(checked)).state == "closed"

    said = await choreo(checked, "faults", "inject", "gateway", "--for", str(OUTAGE_S))
    assert "in payment" in said
    orders = [await checked.place("happy") for _ in range(8)]
    await watch_gateway(checked, "open")
    # It probes, opens again while the outage lasts, and closes after it.
    await watch_gateway(checked, "closed")

    for order_id in orders:
        state = await checked.wait_for(order_id, timeout=40)
        assert state.status == "completed", (order_id, state)
        assert state.payment_id is not None

    row = await gateway(checked)
    assert row.opened >= 1
    assert row.deferred > 0  # messages waited without calling the gateway
    assert row.fault_rate == 0.0  # the outage is over
    payment_group = f"{checked.settings.topic_prefix}payment"
    letters = [e.letter for e in await checked.client.dead_letters()]
    assert [d for d in letters if d.consumer == payment_group] == []
    async with checked.db.pool.acquire() as conn:
        waiting = await conn.fetchval(
            f"SELECT count(*) FROM {schema_name(checked.settings, 'payment')}.retry_queue"
        )
    assert waiting == 0

    log = checked.platform.log("payment")
    assert log.count("circuit breaker of provider gateway: closed -> open") == 1
    assert log.count("circuit breaker of provider gateway: half_open -> closed") == 1
    [listed] = [
        b for b in orjson.loads(await choreo(checked, "breakers", "--json"))
        if b["provider"] == "gateway"
    ]  # fmt: skip
    assert (listed["process"], listed["state"]) == ("payment", "closed")
