"""One trace per order in Jaeger, fetched through Jaeger's own query API; no PII in it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from typer.testing import CliRunner

from choreo.cli import app
from choreo.client import new_order_id
from contracts.samples import sample_order_placed, scenario_order
from events.errors import ChoreoError
from events.producer import publish_first
from projections.queries import Queries
from projections.traces import OrderTrace, fetch_order_trace, fetch_trace
from sagas.returns import V1 as RETURN
from tests.e2e.conftest import Deployment, start_deployment
from tests.e2e.test_return_paths import request, wait_return
from tests.integration.test_cli_checks import cli_on

pytestmark = pytest.mark.integration

FLOW_SERVICES = {
    "cli", "inventory", "payment", "shipping", "crm", "email", "saga-coordinator", "projector",
}  # fmt: skip
ORDER = sample_order_placed()
PII = [
    ORDER.customer_email,
    ORDER.shipping_address.recipient,
    ORDER.shipping_address.line1,
]


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    # The test process places the orders: export its spans to Jaeger too, as the CLI does.
    processor = BatchSpanProcessor(
        OTLPSpanExporter(endpoint="http://127.0.0.1:4317", insecure=True),
        schedule_delay_millis=200,
    )
    trace.get_tracer_provider().add_span_processor(processor)  # type: ignore[attr-defined]
    try:
        # This module opts in to the per-statement database spans, to check they nest.
        async for d in start_deployment({"CHOREO_TRACING_DB_SPANS": "true"}, "tracing"):
            yield d
    finally:
        processor.shutdown()  # type: ignore[no-untyped-call]


async def _trace_with(
    checked: Deployment,
    order_id: str,
    services: set[str],
    spans: frozenset[tuple[str, str]] = frozenset(),
) -> OrderTrace:
    """Poll Jaeger until the order's trace holds spans of ``services`` and the (service, span
    name) pairs ``spans`` (export is batched per process)."""
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    found: OrderTrace | None = None
    while time.monotonic() < deadline:
        try:
            found = await fetch_order_trace(checked.settings, order_id)
        except ChoreoError:
            found = None
        # Export is batched per process: wait until every process's spans are in, i.e. the
        # services are there and no span's parent is missing.
        if (
            found is not None
            and services <= found.services
            and len(found.roots) == 1
            and spans <= {(s.service, s.name) for s in found.spans}
        ):
            return found
        await asyncio.sleep(0.5)
    if found is not None:
        return found  # the assertions that follow say what is missing
    raise AssertionError(f"no trace of {order_id} in Jaeger")


def _assert_one_connected_tree(found: OrderTrace) -> None:
    ids = {s.span_id for s in found.spans}
    assert found.other_traces == [], "the order's spans are split over several traces"
    assert len(found.roots) == 1, [(r.service, r.name) for r in found.roots]
    root = found.roots[0]
    assert (root.service, root.name) == ("cli", "order.placed publish")
    for span in found.spans:
        if span is not root:
            assert span.parent_id in ids, f"{span.service} {span.name} has a dangling parent"


def _assert_no_pii(found: OrderTrace) -> None:
    exported = orjson.dumps([s.to_json() for s in found.spans]).decode()
    for value in PII:
        assert value not in exported


async def test_a_completed_order_is_one_trace_across_every_service(checked: Deployment):
    order_id = (await checked.client.place_order(ORDER)).saga_key
    checked.orders.append(order_id)
    assert (await checked.wait_for(order_id)).status == "completed"
    found = await _trace_with(checked, order_id, FLOW_SERVICES)
    _assert_one_connected_tree(found)
    names = {(s.service, s.name) for s in found.spans}
    assert ("payment", "handle order.approved") in names
    assert ("saga-coordinator", "handle order.placed") in names
    process = [s for s in found.spans if s.name.endswith(" process")]
    assert process
    for span in process:
        assert span.attributes["messaging.system"] == "kafka"
        assert span.attributes["choreo.order_id"] == order_id
        assert "messaging.consumer.group.name" in span.attributes
        assert "messaging.kafka.offset" in span.attributes
    db_spans = [s for s in found.spans if "db.system" in s.attributes]
    assert db_spans, "asyncpg spans nest under the handlers"
    _assert_no_pii(found)


async def test_an_order_not_sampled_completes_and_no_process_records_a_span(
    checked: Deployment,
):
    # Placed under a parent that was not sampled (as with OTEL_TRACES_SAMPLER_ARG=0.1, nine
    # orders in ten): every process follows that decision and passes the context on.
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    unsampled = f"00-{trace_id}-{parent_id}-00"
    placed = await publish_first(
        checked.client.producer, await checked.client.sealed(ORDER), saga_type="order",
        saga_key=new_order_id(), by="cli", trace_parent=unsampled,
    )  # fmt: skip
    order_id = placed.saga_key
    checked.orders.append(order_id)
    assert (await checked.wait_for(order_id)).status == "completed"
    # Its first event was logged with the context it was placed under, unsampled.
    assert await Queries(checked.db, checked.settings).traceparent(order_id) == unsampled
    # A sampled order placed after it, whole in Jaeger: each process exported what it had.
    sampled = (await checked.client.place_order(ORDER)).saga_key
    checked.orders.append(sampled)
    assert (await checked.wait_for(sampled)).status == "completed"
    await _trace_with(checked, sampled, FLOW_SERVICES)
    assert await fetch_trace(checked.settings, trace_id) is None


async def test_batch_and_polling_statements_make_no_traces_of_their_own(checked: Deployment):
    """A delivery batch's, a projector batch's and the pollers' statements belong to no one
    order: they are not exported as traces of a lone BEGIN or COMMIT each."""
    started_us = int(time.time() * 1_000_000)
    order_id = (await checked.client.place_order(ORDER)).saga_key
    checked.orders.append(order_id)
    assert (await checked.wait_for(order_id)).status == "completed"
    await _trace_with(checked, order_id, FLOW_SERVICES)  # the processes have exported
    async with httpx.AsyncClient(timeout=5) as http:
        for service in sorted(FLOW_SERVICES - {"cli"}):
            for operation in ("BEGIN;", "COMMIT;"):  # asyncpg spans: the first word
                response = await http.get(
                    f"{checked.settings.jaeger_query_url}/api/traces",
                    params={
                        "service": service,
                        "operation": operation,
                        "start": started_us,
                        "end": int(time.time() * 1_000_000),
                        "limit": 5,
                    },
                )
                response.raise_for_status()
                assert response.json()["data"] in ([], None), f"{service}: {operation} traces"


async def test_a_failed_shipment_trace_shows_the_refund_and_the_release(checked: Deployment):
    order = sample_order_placed(country_code="AQ")
    order_id = (await checked.client.place_order(order)).saga_key
    checked.orders.append(order_id)
    state = await checked.wait_for(order_id)
    assert state.cancel_reason == "shipment_failed"
    found = await _trace_with(checked, order_id, FLOW_SERVICES - {"crm"})
    _assert_one_connected_tree(found)
    names = {(s.service, s.name) for s in found.spans}
    assert ("payment", "handle payment.refund") in names
    assert ("inventory", "handle inventory.release") in names
    refund = next(s for s in found.spans if s.name == "handle payment.refund")
    release = next(s for s in found.spans if s.name == "handle inventory.release")
    assert refund.start_us < release.start_us  # newest step compensated first
    _assert_no_pii(found)


async def test_no_customer_email_in_any_log_line(checked: Deployment):
    order_id = (await checked.client.place_order(ORDER)).saga_key
    checked.orders.append(order_id)
    await checked.wait_for(order_id)
    # The logs are really captured and carry the order id (a JSON field, set by the runtime)...
    payment_lines = [orjson.loads(line) for line in checked.platform.log("payment").splitlines()]
    mine = [e for e in payment_lines if e.get("order_id") == order_id]
    assert mine, "payment logged nothing about the order"
    assert all(e["service"] == "payment" and len(e["trace_id"]) == 32 for e in mine)
    # ...and no process wrote the customer's e-mail, name or street.
    for name in FLOW_SERVICES - {"cli"} | {"api"}:
        log = checked.platform.log(name)
        for value in PII:
            assert value not in log, f"{name} logged PII"


async def test_metrics_reach_the_collector(checked: Deployment):
    order_id = (await checked.client.place_order(sample_order_placed(country_code="AQ"))).saga_key
    checked.orders.append(order_id)
    await checked.wait_for(order_id)
    prefix = checked.settings.topic_prefix
    wanted = {
        "choreo_events_processed_total": f'consumer="{prefix}payment"',
        "choreo_handler_duration_milliseconds_bucket": f'consumer="{prefix}inventory"',
        "choreo_saga_duration_seconds_bucket": 'outcome="cancelled:shipment_failed"',
        "choreo_saga_compensations_total": 'command="payment.refund"',
        "choreo_consumer_lag": f'consumer="{prefix}saga-coordinator"',
    }
    deadline = time.monotonic() + 30
    missing = dict(wanted)
    while missing and time.monotonic() < deadline:
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get("http://127.0.0.1:8889/metrics")).text
        missing = {
            name: label
            for name, label in wanted.items()
            if not any(line.startswith(name) and label in line for line in text.splitlines())
        }
        await asyncio.sleep(0.5)
    assert not missing, f"metrics not exported: {missing}"


async def test_a_human_approval_joins_the_order_trace(checked: Deployment):
    order_id = (await checked.client.place_order(scenario_order("large"))).saga_key
    checked.orders.append(order_id)
    await checked.wait_for(order_id, "awaiting_approval")
    queries = Queries(checked.db, checked.settings)
    deadline = time.monotonic() + 30
    parent = None
    while parent is None and time.monotonic() < deadline:
        parent = await queries.traceparent(order_id) if await queries.ready() else None
        await asyncio.sleep(0.2)
    assert parent is not None
    await checked.client.approve(order_id, by="ops-ann", trace_parent=parent)
    assert (await checked.wait_for(order_id)).status == "completed"
    # Payment is in the trace since order.placed: wait for its spans of the approval too.
    handled = ("payment", "handle order.approved")
    found = await _trace_with(checked, order_id, FLOW_SERVICES, frozenset({handled}))
    _assert_one_connected_tree(found)
    approval = next(s for s in found.spans if s.name == "order.approved publish")
    assert approval.service == "cli"
    assert ("payment", "handle order.approved") in {(s.service, s.name) for s in found.spans}


async def test_a_returns_trace_is_found_by_its_start_event(
    checked: Deployment, monkeypatch: pytest.MonkeyPatch
):
    return_id = await request(checked, "happy")
    assert (await wait_return(checked, return_id)).status(RETURN) == "completed"
    queries = Queries(checked.db, checked.settings)
    parent = await queries.traceparent(return_id, "return.requested")
    assert parent is not None
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    participants = {"saga-coordinator", "shipping", "inventory", "payment", "email", "projector"}
    deadline = time.monotonic() + 30
    with cli_on(checked.settings, monkeypatch):
        while True:
            result = await asyncio.to_thread(
                CliRunner().invoke, app, ["sagas", "trace", "return", return_id, "--json"]
            )
            # Export is batched per process: the trace may not be in Jaeger yet (exit 1).
            found = orjson.loads(result.stdout) if result.exit_code == 0 else {"services": []}
            if participants <= set(found["services"]) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        missing = await asyncio.to_thread(
            CliRunner().invoke, app, ["sagas", "trace", "return", "ret-nope"]
        )
    assert result.exit_code == 0, result.output
    assert participants <= set(found["services"]), found["services"]
    assert found["trace_id"] == parent.split("-")[1]
    assert found["saga_key"] == return_id
    keys = {s["attributes"].get("choreo.order_id") for s in found["spans"]} - {None}
    assert keys == {return_id}
    assert missing.exit_code == 1
    assert "no return saga ret-nope" in missing.output
