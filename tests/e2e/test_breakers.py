"""A provider outage on the real platform: the payment gateway fails every call (injected with
`choreo faults inject`, as a person would) until its circuit breaker has opened and a
half-open probe has failed; the charges wait in the retry queue instead of being
dead-lettered; once the outage ends a probe closes it, and every order completes."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from events.breaker_board import BreakerRow, read_breakers
from events.database import schema_name
from tests.e2e.conftest import Deployment, start_deployment

pytestmark = pytest.mark.integration

ENV = {
    "CHOREO_BREAKER_GATEWAY_FAILURE_THRESHOLD": "3",
    "CHOREO_BREAKER_GATEWAY_COOL_DOWN_S": "1",
    "CHOREO_BREAKER_PUBLISH_INTERVAL_MS": "200",
}


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment(ENV, "breakers"):
        yield d


async def choreo(deployment: Deployment, *args: str, exit_code: int = 0) -> str:
    """Run the `choreo` CLI against the deployment; its stdout (its stderr if it is to
    fail)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "choreo", *args,
        env={**os.environ, "CHOREO_TOPIC_PREFIX": deployment.settings.topic_prefix},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await proc.communicate()
    assert proc.returncode == exit_code, stderr.decode()
    return (stdout if exit_code == 0 else stderr).decode()


async def gateway(deployment: Deployment) -> BreakerRow:
    rows = [r for r in await read_breakers(deployment.db, deployment.settings) if not r.stale]
    [row] = [r for r in rows if r.provider == "gateway"]
    return row


async def watch_gateway(
    deployment: Deployment, until: Callable[[BreakerRow], bool], timeout: float = 30
) -> None:
    """Poll the gateway breaker's published row until ``until(row)``."""
    deadline = time.monotonic() + timeout
    seen: list[tuple[str, int]] = []
    while not until(row := await gateway(deployment)):
        if not seen or seen[-1] != (row.state, row.opened):
            seen.append((row.state, row.opened))
        assert time.monotonic() < deadline, f"gateway breaker (state, opened): {seen}"
        await asyncio.sleep(0.05)


async def test_a_gateway_outage_opens_the_breaker_dead_letters_nothing_and_orders_complete(
    checked: Deployment,
):
    before = await checked.place("happy")
    assert (await checked.wait_for(before)).status == "completed"
    assert (await gateway(checked)).state == "closed"

    said = await choreo(
        checked, "faults", "inject", "gateway", "--failure-rate", "1", "--for", "120", "--json"
    )
    assert orjson.loads(said) == {
        "provider": "gateway", "failure_rate": 1.0, "seconds": 120.0, "processes": ["payment"]
    }  # fmt: skip
    await watch_gateway(checked, lambda row: row.fault_rate == 1.0)  # payment applied it
    orders = [await checked.place("happy") for _ in range(8)]
    await watch_gateway(checked, lambda row: row.state == "open")
    # After the cool-down a probe goes through, fails, and opens it again.
    await watch_gateway(checked, lambda row: row.opened >= 2)
    # A provider's name mistyped is refused, not taken for "nothing to clear".
    mistyped = await choreo(checked, "faults", "clear", "gatway", exit_code=1)
    assert "no provider named 'gatway': the running processes call" in mistyped
    assert "gateway" in mistyped.partition("call")[2]
    cleared = await choreo(checked, "faults", "clear", "gateway")  # the outage ends
    assert cleared.strip() == "cleared 1 injected fault(s)"
    await watch_gateway(checked, lambda row: row.state == "closed")

    for order_id in orders:
        state = await checked.wait_for(order_id, timeout=40)
        assert state.status == "completed", (order_id, state)
        assert state.payment_id is not None

    row = await gateway(checked)
    assert row.deferred > 0  # messages waited without calling the gateway
    assert row.fault_rate == 0.0
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
    assert log.count("circuit breaker of provider gateway: half_open -> open") >= 1
    assert log.count("circuit breaker of provider gateway: half_open -> closed") == 1
    [listed] = [
        b for b in orjson.loads(await choreo(checked, "breakers", "--json"))
        if b["provider"] == "gateway"
    ]  # fmt: skip
    assert (listed["process"], listed["state"]) == ("payment", "closed")
