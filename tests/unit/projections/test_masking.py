"""Personal data masked in what the console shows of a decoded payload."""

from __future__ import annotations

from contracts.samples import EXAMPLES
from projections.masking import mask


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
