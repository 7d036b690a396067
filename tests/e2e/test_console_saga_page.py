"""One saga's console page in a real headless Chromium, over the whole platform running:
an order reaching ``completed`` live on its page, a failed shipment's refund before its release
in the timeline and in Jaeger's trace waterfall, an approval from the approvals page resuming
its saga, a return's approval answered on its own page, and a redriven dead letter (one, by
its own button) starting the saga it held.

The platform's processes (services, coordinator, projector) run as in ``choreo run`` on this
module's topics, with tracing to the stack's Jaeger; the API the browser talks to runs in this
process (uvicorn) over that deployment's read models. Takes the README's screenshot of a saga
page (``saga.png``, beside ``test_console.py``'s overview).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import pytest
import uvicorn
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from playwright.async_api import Browser, Page, async_playwright, expect

from contracts.catalog import OrderPlaced
from contracts.return_samples import scenario_return
from contracts.samples import sample_order_placed, scenario_order
from events.codec import Codec
from events.dlq import dead_letter
from events.errors import TransientError
from events.model import Message
from events.topics import topic_for
from projections.api import create_app
from projections.queries import Queries
from tests.conftest import ApiTokens
from tests.e2e.conftest import Deployment, start_deployment
from tests.e2e.test_console import SCREENSHOTS, Console, _free_port, chromium

pytestmark = pytest.mark.integration

SLOW_PAYMENT_S = 4
"""The gateway answers ``tok_slow`` after this long: the page is seen while payment runs."""


@dataclass
class SagaConsole:
    """The platform, and the console over its read models in a browser."""

    deployment: Deployment
    console: Console

    async def open(self, page: Page, path: str, timeout: float = 30.0) -> None:
        """Go to ``path``, again until it is found (the projector may not have the saga yet)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            response = await page.goto(self.console.url + path)
            if response is not None and response.ok:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{path}: {response.status if response else 'no answer'}")
            await asyncio.sleep(0.3)


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    # The test process places the orders: export its spans to Jaeger too, as the CLI does.
    processor = BatchSpanProcessor(
        OTLPSpanExporter(endpoint="http://127.0.0.1:4317", insecure=True),
        schedule_delay_millis=200,
    )
    trace.get_tracer_provider().add_span_processor(processor)  # type: ignore[attr-defined]
    try:
        env = {
            "CHOREO_PAYMENT_SLOW_DELAY_S": str(SLOW_PAYMENT_S),
            # Long enough that payment waits for the slow answer rather than retrying.
            "CHOREO_PAYMENT_GATEWAY_TIMEOUT_S": str(SLOW_PAYMENT_S * 3),
        }
        async for d in start_deployment(env, "console-saga"):
            yield d
    finally:
        processor.shutdown()  # type: ignore[no-untyped-call]


# Long: one fixture sets up the API and the browser over the module's platform, and takes
# them down in reverse order.
@pytest.fixture(scope="module")
async def saga_console(deployment: Deployment, api_tokens: ApiTokens) -> AsyncIterator[SagaConsole]:
    settings = deployment.settings
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, api_tokens.api),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
        )
    )
    serving = asyncio.create_task(server.serve())
    playwright = await async_playwright().start()
    browser: Browser | None = None
    try:
        browser = await playwright.chromium.launch(executable_path=chromium())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.05)
        console = Console(
            f"http://127.0.0.1:{port}", settings, deployment.client.producer, browser, api_tokens
        )
        yield SagaConsole(deployment, console)
    finally:
        if browser is not None:
            await browser.close()
        await playwright.stop()
        server.should_exit = True
        await serving  # the API's schema goes with the deployment (remove_deployment)


@pytest.fixture
async def ui(saga_console: SagaConsole, checked: Deployment) -> SagaConsole:
    """The console, with the platform's invariants checked after the test."""
    return saga_console


async def _place(ui: SagaConsole, order: OrderPlaced) -> str:
    message = await ui.deployment.client.place_order(order)
    ui.deployment.orders.append(message.saga_key)
    return message.saga_key


async def test_an_order_reaches_completed_live_on_its_page(ui: SagaConsole):
    page = await ui.console.signed_in(ui.console.tokens.viewer)
    order_id = await _place(ui, sample_order_placed(payment_token="tok_slow"))
    await ui.open(page, f"/console/sagas/order/{order_id}")
    status = page.get_by_test_id("saga-status")
    flow = page.get_by_test_id("flow")
    # The gateway takes its time: the page shows the saga waiting on payment...
    await expect(status).to_have_text("running")
    await expect(flow.locator("g.node[data-node=payment]")).to_have_attribute(
        "data-state", "current"
    )
    await expect(flow.locator("g.node[data-node=inventory]")).to_have_attribute(
        "data-state", "done"
    )
    await page.evaluate("window.notReloaded = true")
    # ...and then completed, without a reload.
    await expect(status).to_have_text("completed", timeout=30_000)
    assert await page.evaluate("window.notReloaded") is True
    for step in ("payment", "shipping", "crm", "email", "done"):
        await expect(flow.locator(f"g.node[data-node={step}]")).to_have_attribute(
            "data-state", "done"
        )
    await expect(flow.locator("path.edge.flow.taken")).to_have_count(8)  # every curve to the end
    await expect(flow.locator("path.edge.undo.taken")).to_have_count(0)
    await expect(page.locator("#saga[data-live]")).to_have_count(0)  # ended: polled no more
    await ui.deployment.wait_for(order_id)
    await page.context.close()


# Long: one story from the list to the saga's timeline and its trace; the screenshot is taken
# once the waterfall is in.
async def test_a_failed_shipment_shows_the_refund_before_the_release(ui: SagaConsole):
    placed = scenario_order("unshippable")
    order_id = await _place(ui, placed)
    await ui.deployment.wait_for(order_id)
    page = await ui.console.signed_in(ui.console.tokens.viewer, "/console/sagas/order")
    await page.click(f"tr[data-order={order_id}] a[data-testid=saga-link]")
    await expect(page).to_have_url(f"{ui.console.url}/console/sagas/order/{order_id}")
    await expect(page.get_by_test_id("saga-status")).to_have_text("cancelled")
    await expect(page.get_by_test_id("saga-reason")).to_have_text("shipment failed")
    started_with = page.get_by_test_id("captured")
    await expect(started_with).to_contain_text(f"customer id {placed.customer_id}")
    await expect(started_with).to_contain_text(f"total {placed.total_minor / 100:,.2f} EUR")
    # Its tile two columns wide, each value whole on one line (an id unbroken at its hyphen),
    # and the seven tiles on one row at a laptop's 1280 px.
    values = started_with.locator(".value")
    await expect(values).to_have_count(2)
    assert await values.evaluate_all("vs => vs.every((v) => v.getClientRects().length === 1)")
    tiles = await page.locator(".saga-tiles > .tile").evaluate_all(
        "ts => ts.map((t) => [t.getBoundingClientRect().top, t.getBoundingClientRect().width])"
    )
    assert len({top for top, _ in tiles}) == 1, tiles
    status_width, captured_width = tiles[0][1], tiles[5][1]
    assert captured_width > 1.9 * status_width, tiles
    flow = page.get_by_test_id("flow")
    await expect(flow.locator("g.node[data-node=shipping]")).to_have_attribute(
        "data-state", "failed"
    )
    await expect(flow.locator("g.node[data-node=undo_payment]")).to_have_attribute(
        "data-state", "done"
    )
    # The timeline: the refund sent before the release (newest step compensated first).
    timeline = page.get_by_test_id("timeline")
    refund = timeline.locator("g.row.undo[data-row$='payment.refund']")
    release = timeline.locator("g.row.undo[data-row$='inventory.release']")
    refund_sent = await refund.get_attribute("data-start")
    release_sent = await release.get_attribute("data-start")
    assert refund_sent
    assert release_sent
    assert datetime.fromisoformat(refund_sent) < datetime.fromisoformat(release_sent)
    # The waterfall, once every process's spans reached Jaeger (export is batched).
    spans = page.locator("[data-testid=waterfall] .span.undo")
    for _ in range(60):
        names = await spans.evaluate_all("rows => rows.map((r) => r.dataset.span)")
        if {"handle payment.refund", "handle inventory.release"} <= set(names):
            break
        await asyncio.sleep(0.5)
        await page.reload()
    waterfall = page.get_by_test_id("waterfall")
    refunded = waterfall.locator(".span[data-span='handle payment.refund']").first
    released = waterfall.locator(".span[data-span='handle inventory.release']").first
    refund_ms = float(await refunded.get_attribute("data-start-ms") or "nan")
    release_ms = float(await released.get_attribute("data-start-ms") or "nan")
    assert refund_ms < release_ms
    await expect(refunded).to_have_attribute("data-service", "payment")
    traceparent = await Queries(ui.deployment.db, ui.deployment.settings).traceparent(order_id)
    assert traceparent is not None
    await expect(page.get_by_test_id("trace-id")).to_have_text(traceparent.split("-")[1])
    await refunded.scroll_into_view_if_needed()  # the waterfall scrolls: show the undo
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "saga.png"), full_page=True)
    await page.context.close()


async def test_an_approval_from_the_approvals_page_resumes_its_saga(ui: SagaConsole):
    order_id = await _place(ui, scenario_order("large"))
    await ui.deployment.wait_for(order_id, "awaiting_approval")
    page = await ui.console.signed_in(ui.console.tokens.operator, "/console/approvals")
    row = page.locator(f"tr[data-saga-key={order_id}]")
    await expect(row).to_have_count(1, timeout=15_000)
    # Its page first: waiting on a person.
    await row.get_by_test_id("saga-link").click()
    await expect(page.get_by_test_id("saga-status")).to_have_text("awaiting approval")
    approval = page.get_by_test_id("flow").locator("g.node[data-node=approval]")
    await expect(approval).to_have_attribute("data-state", "current")
    await page.go_back()
    await row.locator("input.reason").fill("a known collector")
    await row.locator("button[data-action=approve]").click()
    await expect(page.locator("#toast")).to_have_text(f"{order_id} approved by test-operator")
    # Back on its page, the saga resumes: paid, shipped and completed, live.
    await page.goto(f"{ui.console.url}/console/sagas/order/{order_id}")
    await expect(page.get_by_test_id("saga-status")).to_have_text("completed", timeout=30_000)
    await expect(approval).to_have_attribute("data-state", "done")
    approved = page.locator("table.audit-trail tr[data-event='order.approved']")
    await expect(approved).to_have_count(1)
    await expect(approved).to_contain_text("api")  # the decision's producer
    state = await ui.deployment.wait_for(order_id)
    assert state.approved_by == "test-operator"
    await page.context.close()


async def test_a_returns_approval_is_answered_on_its_page(ui: SagaConsole):
    # The approvals page lists orders; a return waiting for a person is answered on its own
    # page, through POST /sagas/return/{key}/reject (a rejection: no pickup, no restock).
    return_id = f"ret-{uuid.uuid4().hex[:12]}"
    await ui.deployment.client.start_saga("return", scenario_return("large", "ord-e2e"), return_id)
    path = f"/console/sagas/return/{return_id}"
    viewer = await ui.console.signed_in(ui.console.tokens.viewer)
    await ui.open(viewer, path)
    await expect(viewer.get_by_test_id("saga-status")).to_have_text(
        "awaiting approval", timeout=15_000
    )
    await expect(viewer.get_by_test_id("decision")).to_have_count(0)  # an operator's
    await viewer.context.close()
    page = await ui.console.signed_in(ui.console.tokens.operator)
    await ui.open(page, path)
    decision = page.get_by_test_id("decision")
    await decision.locator("input.reason").fill("worn, not unopened")
    await decision.locator("button[data-action=reject]").click()
    await expect(page.locator("#toast")).to_have_text(f"{return_id} rejected by test-operator")
    await expect(page.get_by_test_id("saga-status")).to_have_text("cancelled", timeout=30_000)
    await expect(page.get_by_test_id("saga-reason")).to_have_text("approval rejected")
    await expect(page.get_by_test_id("decision")).to_have_count(0)
    rejected = page.locator("table.audit-trail tr[data-event='return.rejected']")
    await expect(rejected).to_contain_text("api")  # the answer's producer
    await page.context.close()


async def test_a_redriven_dead_letter_starts_the_saga_it_held(ui: SagaConsole, codec: Codec):
    # An order.placed that inventory gave up on before it reached its topic's other readers:
    # dead-lettered with its original bytes, as the runtime dead-letters.
    order_id = f"ord-redrive-{uuid.uuid4().hex[:8]}"
    settings = ui.deployment.settings
    placed = Message.first(
        sample_order_placed(), saga_type="order", saga_key=order_id, producer="cli"
    )
    letter = dead_letter(
        error=TransientError("stock service unavailable"),
        consumer=f"{settings.topic_prefix}inventory",
        topic=topic_for("order.placed", settings),
        partition=0,
        offset=0,
        key=order_id.encode(),
        value=codec.encode(placed),
        headers=[],
        attempts=4,
        event_type="order.placed",
        event_id=str(placed.envelope.event_id),
    )
    await ui.deployment.client.producer.send_records([letter.to_record(settings.dlq_topic)])
    ui.deployment.orders.append(order_id)
    page = await ui.console.signed_in(ui.console.tokens.operator, "/console/dead-letters")
    row = page.locator(f"tr[data-order={order_id}]")
    await expect(row).to_have_count(1, timeout=15_000)
    await expect(row.locator("a")).to_have_attribute("href", f"/console/saga/{order_id}")
    await row.locator("button[data-redrive]").click()  # this one, by its own button
    await expect(page.locator("#toast")).to_contain_text("by test-operator")
    await expect(row).to_have_count(0)
    # The letter's link names only the key: it leads to the saga's page, which the redriven
    # order.placed started and the platform ran to the end.
    await ui.open(page, f"/console/saga/{order_id}")
    await expect(page).to_have_url(f"{ui.console.url}/console/sagas/order/{order_id}")
    await expect(page.get_by_test_id("saga-status")).to_have_text("completed", timeout=30_000)
    await ui.deployment.wait_for(order_id)
    await page.context.close()
