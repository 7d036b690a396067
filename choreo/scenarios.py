"""Sample orders that drive each path of the order saga through the simulated providers.

The triggers are deterministic and documented in the README: a payment token, a SKU with
little stock, a destination the carrier does not serve, an e-mail domain that bounces.
"""

from __future__ import annotations

from events.catalog import OrderPlaced
from events.samples import sample_order_placed

SCENARIOS: dict[str, str] = {
    "happy": "completes: reserve, auto-approve, charge, ship, CRM + confirmation email",
    "large": "total >= approval threshold: waits for `choreo orders approve|reject`",
    "out_of_stock": "asks more SKU-RARE-VASE than exist: cancelled (out_of_stock)",
    "declined": "token tok_declined: payment declined, stock released, cancelled",
    "flaky": "token tok_flaky: payment fails transiently, is retried, completes",
    "timeout": "token tok_timeout: the gateway never answers; payment deadline compensates",
    "unshippable": "ships to AQ: shipment fails; refund, then release; cancelled",
    "bounce": "e-mail at bounce.example: completes, the email is dead-lettered and noted",
}


def scenario_order(name: str) -> OrderPlaced:
    """The sample order of scenario ``name`` (see :data:`SCENARIOS`)."""
    if name == "happy":
        return sample_order_placed()
    if name == "large":
        return sample_order_placed(skus=(("SKU-GOLD-WATCH", 1, 250_000),))
    if name == "out_of_stock":
        return sample_order_placed(skus=(("SKU-RARE-VASE", 500, 9_900),))
    if name == "declined":
        return sample_order_placed(payment_token="tok_declined")
    if name == "flaky":
        return sample_order_placed(payment_token="tok_flaky")
    if name == "timeout":
        return sample_order_placed(payment_token="tok_timeout")
    if name == "unshippable":
        return sample_order_placed(country_code="AQ")
    if name == "bounce":
        return sample_order_placed(email="nobody@bounce.example")
    raise KeyError(f"unknown scenario {name!r}; one of: {', '.join(SCENARIOS)}")
