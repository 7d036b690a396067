"""Each event's line in the audit trail (:meth:`events.model.Event.summary`): what it says,
and never the personal data an event carries."""

from __future__ import annotations

import pytest

from contracts.catalog import CATALOG, InventoryReleased, ShipmentCancelled
from contracts.return_samples import RETURN_EXAMPLES
from contracts.samples import ADDRESS, EXAMPLES, T0
from events.model import Event

EVERY_EXAMPLE: list[Event] = [*EXAMPLES.values(), *RETURN_EXAMPLES.values()]
PERSONAL = ("ada@example.com", "Ada", ADDRESS.recipient, ADDRESS.line1)


def test_every_event_type_of_the_catalog_has_an_example_here() -> None:
    assert {e.event_type for e in EVERY_EXAMPLE} == set(CATALOG)


@pytest.mark.parametrize("event", EVERY_EXAMPLE, ids=lambda e: e.event_type)
def test_a_summary_is_one_line_without_personal_data(event: Event) -> None:
    line = event.summary()
    assert line
    assert "\n" not in line
    assert not [value for value in PERSONAL if value and value in line]


def test_what_the_order_events_say() -> None:
    said = {t: EXAMPLES[t].summary() for t in EXAMPLES}
    assert said["order.placed"] == "3 item(s), total 25.99 EUR, ship to GB"
    charged = EXAMPLES["payment.charged"].model_dump()
    amount = f"{charged['amount_minor'] // 100}.{charged['amount_minor'] % 100:02d}"
    assert said["payment.charged"] == f"charged {amount} EUR (attempt {charged['attempt']})"
    assert said["inventory.reserved"] == "reserved 3 unit(s)"


def test_a_return_request_does_not_repeat_the_customers_words() -> None:
    requested = RETURN_EXAMPLES["return.requested"]
    assert requested.model_dump()["reason"] not in requested.summary()


def test_an_event_without_its_own_line_says_its_type_and_reason() -> None:
    assert EXAMPLES["inventory.release"].summary().startswith("inventory.release: ")
    assert InventoryReleased(released_at=T0).summary() == "inventory.released"
    assert ShipmentCancelled(cancelled_at=T0).summary() == "shipment.cancelled"
