"""Amounts in an event's or a saga's fields: a ``*_minor`` integer is an amount in minor units
of the fields' ``currency``. The one rule the inbox (what a request asks) and the console's
"started with" (what a saga's start captured) read amounts by; only amounts are shown of a
request, since a team's other fields may be personal."""

from __future__ import annotations

from typing import Any


def amounts(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The amounts ``fields`` name: each ``*_minor`` integer field with their ``currency``, in
    their key order (a request's ``total`` or ``refund``, then ``threshold``)."""
    currency = fields.get("currency")
    return [
        {"name": key.removesuffix("_minor"), "minor": value, "currency": currency}
        for key, value in fields.items()
        if key.endswith("_minor") and isinstance(value, int) and not isinstance(value, bool)
    ]
