"""Personal data masked in what the console shows of a decoded payload; a forgotten customer's
sealed values erased."""

from __future__ import annotations

from typing import Any

from contracts.personal import seal_personal_data
from contracts.samples import EXAMPLES, sample_order_placed
from events.personal_data import ERASED, InMemoryKeyring
from projections.masking import MASK, mask


def test_an_order_placed_payload_keeps_no_person():
    payload = EXAMPLES["order.placed"].model_dump(mode="json")
    masked = mask(payload)
    assert masked["customer_email"] == "***"
    assert masked["customer_name"] == "***"
    address = masked["shipping_address"]
    assert (address["recipient"], address["line1"], address["line2"]) == ("***", "***", "***")
    assert (address["city"], address["country_code"]) == ("London", "GB")
    assert masked["items"] == payload["items"]
    assert masked["total_minor"] == payload["total_minor"]


def test_an_email_anywhere_else_keeps_only_its_domain():
    assert mask({"reason": "bounced: ada@example.com", "line2": None}) == {
        "reason": "bounced: ***@example.com",
        "line2": None,
    }


async def _sealed_order(customer_id: str) -> dict[str, Any]:
    order = sample_order_placed()
    order = order.model_copy(update={"customer_id": customer_id})
    return (await seal_personal_data(order, InMemoryKeyring())).model_dump(mode="json")


async def test_a_sealed_value_whose_key_exists_is_masked():
    masked = mask(await _sealed_order("cus-kept"), forgotten=frozenset({"cus-other"}))
    assert masked["customer_email"] == MASK
    assert masked["shipping_address"]["line1"] == MASK
    assert "pii:v1:" not in str(masked)


async def test_a_sealed_value_whose_key_is_gone_reads_as_erased():
    payload = await _sealed_order("cus-gone")
    masked = mask({"orders": [payload]}, forgotten=frozenset({"cus-gone"}))
    [order] = masked["orders"]
    assert order["customer_email"] == ERASED
    assert order["customer_name"] == ERASED
    address = order["shipping_address"]
    assert (address["recipient"], address["line1"]) == (ERASED, ERASED)
    assert address["line2"] is None  # the sample has no second line: nothing sealed there
    assert address["city"] == payload["shipping_address"]["city"]
    assert order["customer_id"] == "cus-gone"


def test_plain_personal_values_stay_masked_whoever_was_forgotten():
    payload = EXAMPLES["order.placed"].model_dump(mode="json")
    masked = mask(payload, forgotten=frozenset({payload["customer_id"]}))
    assert masked["customer_email"] == MASK
    assert masked["shipping_address"]["recipient"] == MASK
