"""Personal data kept out of what the console shows, as the logs keep it out.

The events that carry personal data (``order.placed``: the customer's e-mail and name, the
recipient and street lines of the address) are shown with those values masked; e-mail
addresses anywhere else keep only their domain, as in the logs (:func:`events.logs.redact`).
Sealed values (:mod:`events.personal_data`) are masked the same way: the console never opens
personal data (its role may not read keys), so a forgotten customer's fields look as they did.
"""

from __future__ import annotations

from typing import Any

from events.logs import redact
from events.personal_data import FIELDS as PERSONAL_FIELDS

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
