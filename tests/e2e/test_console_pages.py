"""The console's work pages in a real headless Chromium (Debian's, driven by Playwright):
approving from the approvals page, redriving a dead letter (and its audit row), filtering and
searching the orders list, the overview's latency chart and consumer lag, the definitions.

As in ``test_console.py``, the API runs in this process over read models the real projector
keeps projecting from this module's own topics; the dead letters are real records in this
module's dead-letter topic, the lag is the broker's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from playwright.async_api import Page, async_playwright, expect

from contracts.catalog import OrderApprovalRequested
from contracts.return_samples import scenario_return
from contracts.returns import ReturnApprovalRequested
from events.codec import Codec
from events.database import Database
from events.dlq import dead_letter
from events.errors import DecodeError, TransientError
from events.model import Event, Message
from events.producer import EventProducer, OutgoingRecord
from events.security import kafka_options
from events.settings import Settings, get_settings
from events.topics import partitions_of, provision_topics, topic_for
from projections import API
from projections.api import create_app
from projections.projector import Projector
from sagas.shipped import SAGAS
from tests.conftest import ApiTokens
from tests.e2e.test_console import ROOT, Console, _free_port, chromium, spaced
from tests.integration.kafka_helpers import eventually
from tests.integration.test_api import drop_schema
from tests.integration.test_projector import HAPPY, SHIPMENT_FAILED, flow

pytestmark = pytest.mark.integration

WAITING = ["order.placed", "inventory.reserved", "order.approval_requested"]


def waiting(order_id: str, placed: datetime, expires_in: timedelta) -> list[Message[Event]]:
    """An order waiting for approval since ``placed`` + 1 s, expiring ``expires_in`` later."""
    messages = spaced(flow(order_id, WAITING), placed, 0)
    request = messages[-1]
    asked = request.envelope.occurred_at
    event = OrderApprovalRequested(
        total_minor=2_599,  # the order.placed example's total
        currency="EUR",
        threshold_minor=1_000,
        requested_at=asked,
        expires_at=asked + expires_in,
    )
    return [*messages[:-1], dataclasses.replace(request, event=event)]


def waiting_return(return_id: str, now: datetime, expires_in: timedelta) -> list[Message[Event]]:
    """A return of 2,500.00 EUR waiting for approval since 10 minutes, expiring ``expires_in``
    from ``now``."""
    first: Message[Event] = Message.first(
        scenario_return("large", "ord-done-0"), saga_type="return", saga_key=return_id,
        producer="e2e",
    )  # fmt: skip
    asked = now - timedelta(minutes=10)
    request = ReturnApprovalRequested(
        refund_minor=250_000,
        currency="EUR",
        threshold_minor=100_000,
        requested_at=asked,
        expires_at=now + expires_in,
    )
    return [first, first.caused(request, producer="e2e")]


def customer(messages: list[Message[Event]], customer_id: str) -> list[Message[Event]]:
    """The flow with ``order.placed`` naming ``customer_id``."""
    return [
        dataclasses.replace(m, event=m.event.model_copy(update={"customer_id": customer_id}))
        if m.envelope.event_type == "order.placed"
        else m
        for m in messages
    ]


def sample_orders(now: datetime) -> list[Message[Event]]:
    """Completed and shipment-failed orders over the last 20 minutes (one of each placed by
    ``cust-vip``), three waiting for approval, and a return waiting for approval too."""
    messages = []
    for n in range(6):
        done = spaced(flow(f"ord-done-{n}", HAPPY), now - timedelta(minutes=3 * n + 1), n)
        messages += customer(done, "cust-vip") if n == 3 else done
    for n in range(3):
        failed = spaced(
            flow(f"ord-fail-{n}", SHIPMENT_FAILED), now - timedelta(minutes=4 * n + 2), n
        )
        messages += customer(failed, "cust-vip") if n == 1 else failed
    messages += waiting("ord-ask-soon", now - timedelta(minutes=30), timedelta(minutes=40))
    messages += waiting("ord-ask-late", now - timedelta(minutes=5), timedelta(days=1))
    messages += waiting("ord-ask-over", now - timedelta(hours=2), timedelta(hours=1))
    messages += waiting_return("ret-ask", now, timedelta(hours=2))
    return messages


def dead_letters(settings: Settings, codec: Codec) -> list[OutgoingRecord]:
    """Three dead letters: an order.placed inventory gave up on, a payment.declined the CRM
    gave up on, and bytes the projector could not decode."""
    placed = flow("ord-letter-1", ["order.placed"])[0]
    declined = flow("ord-letter-2", ["order.placed", "payment.declined"])[1]
    letters = [
        dead_letter(
            error=TransientError("stock service unavailable"),
            consumer=f"{settings.topic_prefix}inventory",
            topic=topic_for("order.placed", settings),
            partition=0,
            offset=7,
            key=b"ord-letter-1",
            value=codec.encode(placed),
            headers=[],
            attempts=4,
            event_type="order.placed",
            event_id=str(placed.envelope.event_id),
        ),
        dead_letter(
            error=TransientError("crm timed out"),
            consumer=f"{settings.topic_prefix}crm",
            topic=topic_for("payment.declined", settings),
            partition=1,
            offset=3,
            key=b"ord-letter-2",
            value=codec.encode(declined),
            headers=[],
            attempts=4,
            event_type="payment.declined",
        ),
        dead_letter(
            error=DecodeError("not Avro single-object encoding: expected marker c301"),
            consumer=f"{settings.topic_prefix}projector",
            topic=topic_for("order.placed", settings),
            partition=2,
            offset=9,
            key=b"ord-letter-3",
            value=b"\x00\xffnot avro",
            headers=[],
            attempts=1,
        ),
    ]
    return [letter.to_record(settings.dlq_topic) for letter in letters]


SCREENSHOTS = ROOT / ".state" / "screenshots"
"""Where these pages' screenshots go, for a person to look at (the README shows none)."""


async def screenshot(page: Page, name: str) -> None:
    """The page as it is, into :data:`SCREENSHOTS`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# Long: one fixture sets up the whole module's world (topics, orders, projector, API, browser)
# and takes it down in reverse order.
@pytest.fixture(scope="module")
async def console(stack: None, codec: Codec, api_tokens: ApiTokens) -> AsyncIterator[Console]:
    settings = get_settings().model_copy(update={"topic_prefix": f"uip{uuid.uuid4().hex[:8]}."})
    await provision_topics(settings)
    projector = Projector(settings, codec)
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
    async with EventProducer(settings, codec, client_id="e2e-console-pages") as producer:
        samples = sample_orders(datetime.now(UTC))
        await producer.publish(samples)
        await producer.send_records(dead_letters(settings, codec))
        projecting = asyncio.create_task(projector.run())
        serving = asyncio.create_task(server.serve())
        playwright = await async_playwright().start()
        try:
            # Every sample in the read models before a page is looked at.
            await eventually(lambda: projector.stats.events >= len(samples), what="projected")
            browser = await playwright.chromium.launch(executable_path=chromium())
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await asyncio.sleep(0.05)
            yield Console(f"http://127.0.0.1:{port}", settings, producer, browser, api_tokens)
            await browser.close()
        finally:
            await playwright.stop()
            server.should_exit = True
            await serving
            await projector.stop()
            await projecting
            await projector.close()
            await drop_schema(settings)
            async with Database(settings) as db:
                await db.pool.execute(f"DROP SCHEMA IF EXISTS {API.schema(settings)} CASCADE")


async def test_an_operator_answers_sagas_of_every_type_from_the_approvals_page(console: Console):
    page = await console.signed_in(console.tokens.operator, "/console/approvals")
    rows = page.locator("table.approvals tbody tr")
    await expect(rows).to_have_count(4)
    await expect(page.get_by_test_id("approvals-count")).to_contain_text("(3 orders, 1 return)")
    # The soonest to expire first, whatever the saga's type; the overdue one says so.
    await expect(rows.nth(0)).to_have_attribute("data-saga-key", "ord-ask-over")
    await expect(rows.nth(0).get_by_test_id("time-left")).to_contain_text("overdue")
    await expect(rows.nth(1)).to_have_attribute("data-saga-key", "ord-ask-soon")
    await expect(rows.nth(1).get_by_test_id("time-left")).to_contain_text("min")
    await expect(rows.nth(1).get_by_test_id("time-left")).to_contain_text("then reject")
    ret = rows.nth(2)
    await expect(ret).to_have_attribute("data-saga-type", "return")
    await expect(ret).to_have_attribute("data-saga-key", "ret-ask")
    await expect(ret.locator("td[data-label=amount]")).to_contain_text("2,500.00 EUR")
    await expect(ret.locator("td[data-label=amount]")).to_contain_text("threshold 1,000.00 EUR")
    await expect(ret.get_by_test_id("time-left")).to_contain_text("1 h 59 min")
    late = page.locator("tr[data-saga-key=ord-ask-late]")
    await expect(late).to_contain_text("25.99 EUR")
    await expect(late.get_by_test_id("time-left")).to_contain_text("23 h")

    await screenshot(page, "approvals")
    await late.locator("input.reason").fill("known customer")
    await late.locator("button[data-action=approve]").click()
    await expect(page.locator("#toast")).to_have_text("ord-ask-late approved by test-operator")
    await ret.locator("input.reason").fill("worn")
    await ret.locator("button[data-action=reject]").click()
    await expect(page.locator("#toast")).to_have_text("ret-ask rejected by test-operator")
    # The projector reads the answers; the live list drops both sagas.
    await expect(late).to_have_count(0, timeout=15_000)
    await expect(page.locator("tr[data-saga-key=ret-ask]")).to_have_count(0, timeout=15_000)
    await expect(rows).to_have_count(2)
    for path, answer_type in (
        ("/orders/ord-ask-late/history", "order.approved"),
        ("/sagas/return/ret-ask/history", "return.rejected"),
    ):
        history = await page.evaluate(f"async () => (await (await fetch('{path}')).json()).events")
        answered = [e for e in history if e["event_type"] == answer_type]
        assert [e["producer"] for e in answered] == ["api"], history
    await page.context.close()


async def test_a_viewer_sees_the_approvals_read_only(console: Console):
    page = await console.signed_in(console.tokens.viewer, "/console/approvals")
    await expect(page.locator("tr[data-saga-key=ord-ask-soon]")).to_have_count(1)
    await expect(page.locator("button[data-action], input.reason")).to_have_count(0)
    # The JSON the page's list mirrors: the soonest to expire first, with the request's times.
    answer = await page.evaluate("async () => (await fetch('/approvals')).json()")
    waiting = [a["order"]["order_id"] for a in answer["approvals"]]
    assert waiting[:2] == ["ord-ask-over", "ord-ask-soon"], answer
    assert answer["total"] == len(waiting)
    assert answer["approvals"][0]["threshold_minor"] == 1_000
    assert answer["approvals"][0]["expires_at"] < answer["approvals"][1]["expires_at"]
    every = await page.evaluate("async () => (await fetch('/sagas/waiting')).json()")
    orders = [w["saga"]["saga_key"] for w in every["waiting"] if w["saga"]["saga_type"] == "order"]
    assert orders == waiting, every
    await page.context.close()


async def test_an_operator_redrives_a_dead_letter_and_the_audit_shows_it(console: Console):
    page = await console.signed_in(console.tokens.operator, "/console/dead-letters")
    letters = page.locator("table.letters tbody tr[data-letter]")
    await expect(letters).to_have_count(3)
    # A decodable message shows decoded, personal data masked; the others' bytes in hex.
    placed = page.locator("tr[data-order=ord-letter-1]")
    await expect(placed).to_contain_text("order.placed")
    await expect(placed).to_contain_text("stock service unavailable")
    letter_id = await placed.get_attribute("data-letter")
    message = page.locator("tr[data-order=ord-letter-1] + tr.message")
    await message.locator("summary").click()
    payload = message.get_by_test_id("payload")
    await expect(payload).to_contain_text('"event_type": "order.placed"')
    await expect(payload).to_contain_text('"customer_email": "***"')
    await expect(payload).not_to_contain_text("Lovelace")
    garbage = page.locator("tr[data-order=ord-letter-3] + tr.message")
    await garbage.locator("summary").click()
    await expect(garbage.get_by_test_id("hex")).to_have_text("00 ff 6e 6f 74 20 61 76 72 6f")

    await screenshot(page, "dead-letters")
    # Filters: by topic, then by a word of the reason.
    order_topic = topic_for("order.placed", console.settings)
    await page.select_option("select[name=topic]", order_topic)
    await page.click("form.toolbar button[type=submit]")
    await expect(letters).to_have_count(2)
    await page.fill("input[name=reason]", "STOCK")
    await page.click("form.toolbar button[type=submit]")
    await expect(letters).to_have_count(1)
    await expect(letters.first).to_have_attribute("data-order", "ord-letter-1")

    await placed.locator("input[data-select]").check()
    await page.click("button[data-redrive-selected]")
    await expect(page.locator("#toast")).to_have_text(f"redrove {letter_id} by test-operator")
    audit = page.locator("table.audit tr[data-audit]")
    await expect(audit).to_have_count(1)
    await expect(audit.first).to_contain_text("test-operator")
    await expect(audit.first.locator("[data-audit-letter]")).to_have_text(str(letter_id))
    await expect(audit.first).to_contain_text("order.placed · ord-letter-1")
    await expect(letters).to_have_count(0)  # no longer pending
    # The redriven message reached its topic again: the projector logs the order.
    history = await page.evaluate(
        """async () => {
            for (let i = 0; i < 100; i++) {
                const r = await fetch('/orders/ord-letter-1/history');
                if (r.ok) return (await r.json()).events.map((e) => e.event_type);
                await new Promise((done) => setTimeout(done, 100));
            }
            return null;
        }"""
    )
    assert history == ["order.placed"]
    await page.check("input[name=redriven]")
    await page.click("form.toolbar button[type=submit]")
    await expect(page.get_by_test_id("redriven")).to_have_text(re.compile("by test-operator"))
    audited = await page.evaluate("async () => (await fetch('/dead-letters/redrives')).json()")
    assert audited["count"] == 1
    assert audited["redrives"][0]["redriven_by"] == "test-operator"
    assert [letter["id"] for letter in audited["redrives"][0]["letters"]] == [letter_id]
    await page.context.close()


async def test_a_viewer_cannot_redrive(console: Console):
    page = await console.signed_in(console.tokens.viewer, "/console/dead-letters")
    await page.goto(console.url + "/console/dead-letters?redriven=true")
    await expect(page.locator("table.letters tbody tr[data-letter]")).to_have_count(3)
    await expect(page.locator("button[data-redrive], input[data-select]")).to_have_count(0)
    await page.context.close()


async def test_filters_and_search_narrow_the_orders_list(console: Console):
    page = await console.signed_in(console.tokens.viewer, "/console/sagas/order")
    rows = page.locator("table.orders tbody tr[data-order]")
    await expect(rows.first).to_be_visible()
    assert await rows.count() >= 12

    await page.select_option("select[name=reason]", "shipment_failed")
    await page.click("form.toolbar button[type=submit]")
    await expect(rows).to_have_count(3)
    await expect(page.locator("tr[data-order^=ord-fail-]")).to_have_count(3)

    await page.get_by_test_id("search").fill("cust-vip")  # a customer id, with the reason
    await page.click("form.toolbar button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-order", "ord-fail-1")

    await page.get_by_test_id("clear").click()
    await page.get_by_test_id("search").fill("done-")  # a part of the order id
    await page.click("form.toolbar button[type=submit]")
    await expect(rows).to_have_count(6)
    # The status chips count what the other filters keep, and keep them.
    await expect(page.locator("a.chip[data-status=completed] .n")).to_have_text("6")
    await expect(page.locator("a.chip[data-status=cancelled] .n")).to_have_text("0")
    await page.click("a.chip[data-status=cancelled]")
    await expect(rows).to_have_count(0)
    await page.click("a.chip[data-status=completed]")
    await expect(rows).to_have_count(6)

    # Placed in the last 5 minutes (UTC): ord-done-0 (1 min ago) and ord-done-1 (4 min ago).
    since = datetime.now(UTC) - timedelta(minutes=5)
    await page.fill("input[name=since]", since.strftime("%Y-%m-%dT%H:%M:%S"))
    await page.click("form.toolbar button[type=submit]")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_have_attribute("data-order", "ord-done-0")
    await expect(rows.nth(1)).to_have_attribute("data-order", "ord-done-1")
    assert "status=completed" in page.url
    assert "q=done-" in page.url
    await page.context.close()


async def test_the_overview_charts_saga_latency_and_shows_the_brokers_consumer_lag(
    console: Console,
):
    # A consumer group of this deployment that committed offset 0 on the order topic: its lag
    # is every record there, as the broker counts them.
    settings = console.settings
    partitions = await partitions_of(settings, [topic_for("order.placed", settings)])
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        group_id=f"{settings.topic_prefix}inventory",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    records = sum(ends.values())
    assert records > 0

    page = await console.signed_in(console.tokens.viewer)
    await expect(page.get_by_test_id("lag-inventory")).to_have_text(f"{records:,}")
    # The projector's own group commits to Kafka after each batch: caught up, no lag.
    await expect(page.get_by_test_id("lag-projector")).to_have_text("0", timeout=15_000)
    # Every saga that finished (6 completed, 3 cancelled) is counted in a minute's point.
    chart = page.get_by_test_id("latency-chart")
    await expect(chart.locator("circle.p95").first).to_be_visible()
    counts = await chart.locator("g.point").evaluate_all(
        "points => points.map((p) => Number(p.dataset.n))"
    )
    assert sum(counts) == 9, counts
    await expect(chart.locator("g.point title").first).to_contain_text("p95")
    await screenshot(page, "overview-latency-lag")
    await page.context.close()


async def test_the_definitions_page_shows_the_order_sagas_steps_and_flow(console: Console):
    page = await console.signed_in(console.tokens.viewer, "/console/definitions")
    order = page.locator("section[data-definition=order][data-version='1']")
    steps = order.locator("table.steps tbody tr")
    await expect(steps).to_have_count(6)
    names = await steps.evaluate_all("rows => rows.map((r) => r.dataset.step)")
    assert names == ["inventory", "approval", "payment", "shipping", "crm", "email"]
    payment = order.locator("tr[data-step=payment]")
    await expect(payment).to_contain_text("order.approved")
    await expect(payment).to_contain_text("payment.declined → payment_declined")
    await expect(payment.get_by_test_id("deadlines")).to_have_text("answer 30s → payment_timeout")
    await expect(payment).to_contain_text("payment.refund")
    await expect(order.locator("tr[data-step=approval]")).to_contain_text("timeout 24h → reject")
    # How the types link: a return names its order by order_id; the order is named by returns.
    ret = page.locator("section[data-definition=return]")
    await expect(ret.locator("h2.section")).to_contain_text("names order by order_id")
    await expect(ret.get_by_test_id("names")).to_have_attribute("href", "#order-v1")
    await expect(order.get_by_test_id("named-by")).to_have_text("return")
    await expect(order.get_by_test_id("named-by")).to_have_attribute("href", "#return-v1")
    # At a laptop's width the steps table fits its card: the compensation column in sight.
    card = order.locator("div.card:has(> table.steps)")
    assert await card.evaluate("c => c.scrollWidth <= c.clientWidth"), "the steps table scrolls"
    # The flow, drawn on the server: start, six steps, the end and three compensations.
    flow = order.get_by_test_id("flow")
    await expect(flow.locator("g.node")).to_have_count(11)
    await expect(flow.locator("g.node.task")).to_have_count(1)
    await expect(flow.locator("g.node.optional[data-node=email]")).to_have_count(1)
    await expect(flow.locator("g.node.undo[data-node=undo_payment]")).to_contain_text(
        "payment.refund"
    )
    await expect(flow.locator("path.edge.undo")).to_have_count(3)
    await expect(order.locator("tr[data-knob=approval_threshold_minor]")).to_contain_text("100,000")
    # How to start one: the start event's fields, from its newest schema.
    start = order.get_by_test_id("start-event")
    await expect(start.locator("summary")).to_have_text("Start one: order.placed v4, 20 fields")
    await start.locator("summary").click()
    await expect(start).to_contain_text("choreo sagas start order --example > order.json")
    line2 = start.locator("tr[data-field='shipping_address.line2']")
    await expect(line2).to_contain_text("string or null")
    await expect(line2).to_contain_text("Optional, default null.")
    await screenshot(page, "definitions")
    # From a definition to its sagas: the returns list has this module's return.
    await page.locator("section[data-definition=return]").get_by_test_id("sagas-of-type").click()
    await expect(page).to_have_url(console.url + "/console/sagas/return")
    await expect(page.locator("tr[data-saga-key=ret-ask]")).to_have_count(1)
    # What each return started with: its order and refund, from what the start captured.
    started_with = page.locator("tr[data-saga-key=ret-ask]").get_by_test_id("captured")
    await expect(started_with).to_contain_text("order id ord-done-0")
    await expect(started_with).to_contain_text("refund 2,500.00 EUR")
    await expect(started_with.get_by_test_id("captured-link")).to_have_attribute(
        "href", "/console/sagas/order/ord-done-0"
    )
    # Under the list, how the type is doing: ret-ask started within the chart's 30 minutes.
    activity = page.get_by_test_id("activity")
    await expect(activity.get_by_test_id("started-chart").locator("rect")).to_have_count(30)
    await expect(
        activity.get_by_test_id("started-chart").locator("rect[data-n='1']")
    ).to_have_count(1)
    await expect(activity.locator("h2")).to_have_text(
        ["Started per minute last 30 minutes", re.compile("^Latency"), re.compile("^Step latency"),
         "Cancel reasons"]
    )  # fmt: skip
    # The order id a return started with is the order saga's key: it links to that order.
    await page.goto(console.url + "/console/sagas/return/ret-ask")
    order_link = page.get_by_test_id("captured").get_by_test_id("captured-link")
    await expect(order_link).to_have_text("ord-done-0")
    await order_link.click()
    await expect(page).to_have_url(console.url + "/console/sagas/order/ord-done-0")
    await expect(page.get_by_test_id("saga-status")).to_have_text("completed")
    # And back: the order's page lists the sagas that name it, this return among them.
    named_by = page.get_by_test_id("named-by")
    await expect(named_by).to_contain_text("return ret-ask")
    await named_by.get_by_test_id("named-by-link").click()
    await expect(page).to_have_url(console.url + "/console/sagas/return/ret-ask")
    await page.context.close()


OVERLAPS = """svg => {
  const inside = (a, b) => a.x >= b.x && a.y >= b.y && a.x + a.width <= b.x + b.width
    && a.y + a.height <= b.y + b.height;
  const meets = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width
    && a.y < b.y + b.height && b.y < a.y + a.height;
  const boxes = [...svg.querySelectorAll("g.node")]
    .map((g) => [g, g.querySelector("rect").getBBox()]);
  const out = [];
  for (const [g, rect] of boxes)
    for (const text of g.querySelectorAll("text"))
      if (!inside(text.getBBox(), rect)) out.push(`${text.textContent} leaves its box`);
  for (const label of svg.querySelectorAll("text.edge-label"))
    for (const [g, rect] of boxes)
      if (meets(label.getBBox(), rect))
        out.push(`${label.textContent} runs under ${g.dataset.node}`);
  return out;
}"""


async def test_every_flows_text_stays_in_its_box_and_off_the_other_boxes(console: Console):
    # Measured in Chromium with the console's fonts: the layout sizes columns from estimates
    # of text widths, which this holds to what the browser draws.
    page = await console.signed_in(console.tokens.viewer, "/console/definitions")
    flows = page.get_by_test_id("flow")
    await expect(flows).to_have_count(len(SAGAS.types))
    for index in range(len(SAGAS.types)):
        assert await flows.nth(index).evaluate(OVERLAPS) == []
    await page.context.close()


PHONE = {"width": 390, "height": 844}


async def test_on_a_phone_no_page_scrolls_sideways_and_the_decision_is_in_reach(console: Console):
    page = await console.signed_in(console.tokens.operator, "/console", **PHONE)
    for path in (
        "/console",
        "/console/sagas/order",
        "/console/sagas/order/ord-done-0",
        "/console/approvals",
        "/console/dead-letters",
        "/console/definitions",
        "/console/sagas",
        "/console/sagas/return",
    ):
        await page.goto(console.url + path)
        await expect(page.locator("main")).to_be_visible()
        # Wide tables and drawings scroll within their cards; the page keeps the phone's width.
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)
    # The approvals page: each order a block of its own, its buttons on screen.
    await page.goto(console.url + "/console/approvals")
    soon = page.locator("tr[data-saga-key=ord-ask-soon]")
    approve = soon.locator("button[data-action=approve]")
    await expect(page.locator("table.approvals thead")).to_be_hidden()
    await expect(soon.locator("td[data-label=amount]")).to_have_css("display", "block")
    box = await approve.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    await screenshot(page, "approvals-phone")
    await approve.click()
    await expect(page.locator("#toast")).to_have_text("ord-ask-soon approved by test-operator")
    await expect(soon).to_have_count(0, timeout=15_000)
    await page.context.close()
