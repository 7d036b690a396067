"""The console in a real headless Chromium (Debian's, driven by Playwright): sign in, the
overview's counts updating live, the orders list's filter, an operator's approval, and a
viewer refused the operator's buttons and API calls. Takes the README's screenshot.

The API runs in this process (uvicorn) over read models the real projector keeps projecting
from this module's topics, so what the browser shows is the read side as deployed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright, expect

from events.codec import Codec
from events.model import Event, Message
from events.producer import EventProducer
from events.settings import Settings, get_settings
from events.topics import provision_topics
from projections.api import create_app
from projections.projector import Projector
from tests.conftest import ApiTokens
from tests.integration.test_api import drop_schema
from tests.integration.test_projector import HAPPY, SHIPMENT_FAILED, flow

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# The README's screenshot is refreshed only when asked (CHOREO_UPDATE_SCREENSHOTS=1), so a test
# run leaves the checkout as it was; otherwise it is written to the state folder.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("CHOREO_UPDATE_SCREENSHOTS") == "1"
    else ROOT / ".state" / "screenshots"
)
SCREENSHOT = SCREENSHOTS / "overview.png"
WAITING = ["order.placed", "inventory.reserved", "order.approval_requested"]
HAPPY_ORDERS = 24
FAILED_ORDERS = 3
ORDERS = HAPPY_ORDERS + FAILED_ORDERS + 2


def spaced(messages: list[Message[Event]], start: datetime, seed: int) -> list[Message[Event]]:
    """The flow placed at ``start``, its events some hundreds of milliseconds apart (varying
    with ``seed``), so the overview has rates and step latencies to show."""
    out: list[Message[Event]] = []
    at = start
    for i, message in enumerate(messages):
        event = message.event
        if message.envelope.event_type == "order.placed":
            event = event.model_copy(update={"placed_at": start})
        envelope = message.envelope.model_copy(update={"occurred_at": at})
        out.append(dataclasses.replace(message, envelope=envelope, event=event))
        at += timedelta(milliseconds=120 + (seed * 37 + i * 53) % 400 + 200 * (i == 3))
    return out


def sample_orders() -> list[Message[Event]]:
    """Orders placed over the last 25 minutes: completed, shipment failed, awaiting approval."""
    now = datetime.now(UTC)
    messages = []
    for n in range(HAPPY_ORDERS):
        placed = now - timedelta(minutes=25 * (HAPPY_ORDERS - n) / HAPPY_ORDERS, seconds=5)
        messages += spaced(flow(f"ord-happy-{n:02}", HAPPY), placed, n)
    for n in range(FAILED_ORDERS):
        placed = now - timedelta(minutes=3 + 7 * n)
        messages += spaced(flow(f"ord-failed-{n}", SHIPMENT_FAILED), placed, n)
    for n in (1, 2):
        messages += spaced(flow(f"ord-wait-{n}", WAITING), now - timedelta(minutes=n), n)
    return messages


def chromium() -> str:
    """Debian's Chromium (`make browser` installs it); Playwright never downloads its own."""
    found = os.environ.get("CHOREO_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("no Chromium: run `make browser` (Debian's chromium package)")
    return found


@dataclass
class Console:
    """The console under test: its address, the producer feeding its topics, a browser."""

    url: str
    settings: Settings
    producer: EventProducer
    browser: Browser
    tokens: ApiTokens

    async def signed_in(
        self, token: str, path: str = "/console", width: int = 1280, height: int = 900
    ) -> Page:
        """A fresh browser session signed in with ``token``, at ``path``, in a window of
        ``width`` by ``height`` CSS pixels."""
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        await page.goto(self.url + path)
        await expect(page).to_have_url(
            f"{self.url}/console/sign-in?next={path.replace('/', '%2F')}"
        )
        await page.fill("#token", token)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(self.url + path)
        return page


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Long: one fixture sets up the whole module's world (topics, orders, projector, API, browser)
# and takes it down in reverse order.
@pytest.fixture(scope="module")
async def console(stack: None, codec: Codec, api_tokens: ApiTokens) -> AsyncIterator[Console]:
    settings = get_settings().model_copy(update={"topic_prefix": f"ui{uuid.uuid4().hex[:8]}."})
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
    async with EventProducer(settings, codec, client_id="e2e-console") as producer:
        await producer.publish(sample_orders())
        projecting = asyncio.create_task(projector.run())
        serving = asyncio.create_task(server.serve())
        playwright = await async_playwright().start()
        try:
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


async def test_an_operator_signs_in_and_the_overview_updates_live(console: Console):
    page = await console.signed_in(console.tokens.operator)
    await expect(page.locator(".who .name")).to_have_text("test-operator")
    await expect(page.locator("[data-role]")).to_have_text("operator")
    await expect(page.get_by_test_id("orders-total")).to_have_text(str(ORDERS))
    await expect(page.get_by_test_id("count-completed")).to_have_text(str(HAPPY_ORDERS))
    await expect(page.get_by_test_id("count-cancelled")).to_have_text(str(FAILED_ORDERS))
    await expect(page.get_by_test_id("count-waiting")).to_have_text("2")
    await expect(page.get_by_test_id("dead-letters")).to_have_text("0")
    reason = page.locator("tr[data-reason=shipment_failed] td.n")
    await expect(reason).to_have_text(str(FAILED_ORDERS))
    await expect(page.locator("tr[data-step]")).to_have_count(5)  # inventory ... email
    await expect(page.locator("svg.columns rect")).to_have_count(30)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Live: a new order shows without a reload (the page's own marker survives).
    await page.evaluate("window.notReloaded = true")
    await console.producer.publish(flow("ord-happy-new", HAPPY))
    total = page.get_by_test_id("orders-total")
    await expect(total).to_have_text(str(ORDERS + 1), timeout=15_000)
    await expect(page.get_by_test_id("count-completed")).to_have_text(str(HAPPY_ORDERS + 1))
    assert await page.evaluate("window.notReloaded") is True
    await page.context.close()


async def test_an_operator_pages_filters_and_approves_from_the_orders_list(console: Console):
    page = await console.signed_in(console.tokens.operator, "/console/sagas/order")
    rows = page.locator("table.orders tbody tr")
    await expect(rows).to_have_count(25)  # a page, newest first
    await expect(page.locator(".pager")).to_contain_text("page 1 of 2")
    await page.get_by_test_id("older").click()
    await expect(page.locator(".pager")).to_contain_text("page 2 of 2")
    await expect(rows).to_have_count(ORDERS + 1 - 25)  # with the live test's new order

    await page.click("a.chip[data-status=cancelled]")
    await expect(rows).to_have_count(FAILED_ORDERS)
    await expect(rows.first).to_have_attribute("data-order", "ord-failed-0")
    await expect(rows.first).to_contain_text("shipment failed")

    await page.click("a.chip[data-status=awaiting_approval]")
    await expect(rows).to_have_count(2)
    await page.click("tr[data-order=ord-wait-1] button[data-action=approve]")
    await expect(page.locator("#toast")).to_have_text("ord-wait-1 approved by test-operator")
    # The projector reads the approval; the live list no longer has the order waiting.
    await expect(page.locator("tr[data-order=ord-wait-1]")).to_have_count(0, timeout=15_000)
    await expect(rows).to_have_count(1)
    await page.context.close()


async def test_a_viewer_sees_no_operator_buttons_and_is_refused_the_api(console: Console):
    page = await console.signed_in(console.tokens.viewer, "/console/sagas/order")
    await expect(page.locator("[data-role]")).to_have_text("viewer")
    await expect(page.locator("tr[data-order=ord-wait-2]")).to_have_count(1)
    await expect(page.locator("button[data-action]")).to_have_count(0)
    answer = await page.evaluate(
        """async () => {
            const csrf = document.querySelector('meta[name="choreo-csrf"]').content;
            const r = await fetch('/orders/ord-wait-2/approve', {
                method: 'POST',
                headers: {'X-Choreo-CSRF': csrf, 'Content-Type': 'application/json'},
                body: '{}'});
            return {status: r.status, body: await r.json()};
        }"""
    )
    assert answer == {
        "status": 403,
        "body": {"error": "forbidden", "detail": "test-viewer is a viewer; this needs operator"},
    }
    # Signing out ends the session: the next page asks to sign in again.
    await page.click("text=Sign out")
    await expect(page).to_have_url(f"{console.url}/console/sign-in")
    await page.goto(console.url + "/console")
    await expect(page.locator("#token")).to_be_visible()
    await page.context.close()


async def test_the_api_docs_render_from_the_api_alone(console: Console):
    # FastAPI's default /docs loads Swagger UI from cdn.jsdelivr.net: a blank page on a
    # machine without internet access, as this one is.
    page = await (await console.browser.new_context()).new_page()
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    await page.goto(console.url + "/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Choreo API")
    await expect(page.locator('.opblock-summary-path[data-path="/orders"]')).to_have_count(1)
    assert fetched, "the page fetched nothing"
    assert [url for url in fetched if not url.startswith(console.url)] == []
    await page.context.close()
