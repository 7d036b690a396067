"""Personal data kept out of what the console shows, as the logs keep it out.

The events that carry personal data (``order.placed``: the customer's e-mail and name, the
recipient and street lines of the address) are shown with those values masked; e-mail
addresses anywhere else keep only their domain, as in the logs (:func:`events.logs.redact`).
"""

from __future__ import annotations

from typing import Any

from events.logs import redact

PERSONAL_FIELDS = frozenset({"customer_email", "customer_name", "recipient", "line1", "line2"})
"""Payload fields whose values identify a person (the city, postcode and country do not)."""

MASK = "***"


def mask(value: Any) -> Any:
    """``value`` (a decoded payload) with personal fields masked and e-mails redacted."""
    if isinstance(value, dict):
        return {
            k: MASK if k in PERSONAL_FIELDS and v is not None else mask(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value
