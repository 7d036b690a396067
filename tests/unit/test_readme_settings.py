"""The README's Configuration section names every setting the code reads from the
environment: each field of every settings class, under its prefix or its aliases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from choreo.stack.base import StackSettings
from events.breakers import BreakerSettings
from events.settings import Settings
from projections.tokens import ApiSettings
from saga_coordinator.context import CoordinatorSettings
from services.crm.context import CrmSettings
from services.email.context import EmailSettings
from services.inventory.context import InventorySettings
from services.payment.context import PaymentSettings
from services.shipping.context import ShippingSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
CLASSES: tuple[type[BaseSettings], ...] = (
    Settings, StackSettings, BreakerSettings, ApiSettings, CoordinatorSettings, CrmSettings,
    EmailSettings, InventorySettings, PaymentSettings, ShippingSettings,
)  # fmt: skip


def variables(settings_class: type[BaseSettings]) -> list[tuple[str, ...]]:
    """Each field's variables: its aliases (each one reads it) if it has any, else the prefix
    and its name."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    found: list[tuple[str, ...]] = []
    for name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            found.append(tuple(str(choice) for choice in alias.choices))
        else:
            found.append(((prefix + name).upper(),))
    return found


ROWS = [line.split(" | ")[0] for line in README.splitlines() if line.startswith("| `")]
FAMILIES = [  # `CHOREO_<SERVICE>_FAILURE_RATE`: one name segment for each placeholder
    re.compile(re.sub(r"<[A-Z]+>", "[A-Z0-9]+", name) + "$")
    for row in ROWS
    for name in re.findall(r"`([A-Z0-9_]*<[A-Z]+>[A-Z0-9_<>]*)`", row)
]


def documented(variable: str) -> bool:
    """Named whole; or a table row's suffix of its first name
    (`` `CHOREO_BREAKER_COOL_DOWN_S` / `_HALF_OPEN_PROBES` ``); or of a family a row names
    (`` `CHOREO_<SERVICE>_FAILURE_RATE` ``)."""
    if f"`{variable}`" in README or any(f.match(variable) for f in FAMILIES):
        return True
    for row in ROWS:
        names = re.findall(r"`([A-Z_][A-Z0-9_]*)`", row)
        for suffix in (n for n in names[1:] if n.startswith("_")):
            stem = variable.removesuffix(suffix)
            if stem != variable and names[0].startswith(stem + "_"):
                return True
    return False


@pytest.mark.parametrize("settings_class", CLASSES, ids=lambda c: c.__name__)
def test_every_setting_is_in_the_readme(settings_class: type[BaseSettings]) -> None:
    fields = variables(settings_class)
    assert fields
    assert [names for names in fields if not any(map(documented, names))] == []


def test_a_variable_the_readme_lacks_is_found() -> None:
    assert not documented("CHOREO_NO_SUCH_SETTING")
    assert documented("CHOREO_BREAKER_HALF_OPEN_PROBES")  # a row's suffix
    assert not documented("CHOREO_BREAKER_NO_SUCH_PROBES")
    assert documented("CHOREO_CRM_FAILURE_RATE")  # a family
    assert not documented("CHOREO_CRM_FAILURE_RATIO")
