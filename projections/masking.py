"""Personal data kept out of what the console shows, as the logs keep it out.

The events that carry personal data (``order.placed``: the customer's e-mail and name, the
recipient and street lines of the address) are shown with those values masked; e-mail
addresses anywhere else keep only their domain, as in the logs (:func:`events.logs.redact`).
Sealed values (:mod:`events.personal_data`) are masked the same way while their customer's key
exists: the console never opens personal data (its role may not read keys). Once the customer
is forgotten they read as :data:`~events.personal_data.ERASED`: the console's role may read
which keys exist (:func:`~events.personal_data.forgotten_customers`), not the keys.
"""

from __future__ import annotations

from typing import Any

from events.logs import redact
from events.personal_data import ERASED, is_erased
from events.personal_data import FIELDS as PERSONAL_FIELDS

MASK = "***"


def mask(value: Any, forgotten: frozenset[str] = frozenset()) -> Any:
    """``value`` (a decoded payload) with personal fields masked and e-mails redacted; sealed
    values of the customers in ``forgotten`` (whose keys are gone) read as erased."""
    if isinstance(value, dict):
        return {k: _field(k, v, forgotten) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, forgotten) for v in value]
    if is_erased(value, forgotten):
        return ERASED
    if isinstance(value, str):
        return redact(value)
    return value


def _field(name: str, value: Any, forgotten: frozenset[str]) -> Any:
    if is_erased(value, forgotten):
        return ERASED
    if name in PERSONAL_FIELDS and value is not None:
        return MASK
    return mask(value, forgotten)
