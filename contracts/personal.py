"""Personal fields in events: plain (events written before sealing) or sealed, and sealing them.

``order.placed`` (v4) and ``return.requested`` (v2) say in ``personal_data`` how their personal
fields (:data:`events.personal_data.FIELDS`: the customer's e-mail and name, the address's
recipient and street lines) are written. Producers seal them (:func:`seal_personal_data`)
before publishing; events of earlier schema versions read as ``plain``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, TypeVar

from contracts.parts import EMAIL_PATTERN
from events.model import Event
from events.personal_data import FIELDS, SEALED_PATTERN, Keyring, is_sealed, seal

PersonalData = Literal["plain", "sealed"]
"""How an event's personal fields are written."""

EMAIL_OR_SEALED_PATTERN = rf"^(?:{EMAIL_PATTERN[1:-1]}|{SEALED_PATTERN})$"
"""An e-mail address, or one sealed."""

E = TypeVar("E", bound=Event)


def personal_items(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The personal fields of a payload (its own and its records'), as (name, value); None
    values left out."""
    found: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            found.extend(personal_items(value))
        elif key in FIELDS and isinstance(value, str):
            found.append((key, value))
    return found


def check_personal_data(mode: PersonalData, values: Iterable[str | None]) -> None:
    """Raise ValueError unless every personal value (None: absent) is written as ``mode``
    says."""
    present = [value for value in values if value is not None]
    if mode == "sealed" and not all(map(is_sealed, present)):
        raise ValueError("personal_data is sealed but a personal field is plain text")
    if mode == "plain" and any(map(is_sealed, present)):
        raise ValueError("personal_data is plain but a personal field is sealed")


def _sealed(data: dict[str, Any], seals: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = _sealed(value, seals)
        elif key in FIELDS and isinstance(value, str):
            out[key] = seals[f"{key}\x00{value}"]
        else:
            out[key] = value
    return out


async def seal_personal_data(event: E, keyring: Keyring) -> E:
    """``event`` with every personal field sealed under its customer's key (made if needed)
    and ``personal_data`` set to ``sealed``; an event sealed already is returned as it is.

    Raises:
        TypeError: the event type carries no ``personal_data``.
    """
    data = event.model_dump()
    if "personal_data" not in data:
        raise TypeError(f"{event.event_type} carries no personal data to seal")
    if data["personal_data"] == "sealed":
        return event
    customer_id: str = data["customer_id"]
    seals: dict[str, str] = {}
    for key, value in personal_items(data):
        seals[f"{key}\x00{value}"] = await seal(keyring, customer_id, key, value)
    return type(event).model_validate({**_sealed(data, seals), "personal_data": "sealed"})
