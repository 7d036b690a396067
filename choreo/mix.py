"""The order mix of a run (`choreo bench`, `choreo chaos`): scenario weights, which order gets
which scenario, and how each scenario's order is expected to end."""

from __future__ import annotations

import math
import random

from contracts.samples import SCENARIOS

DEFAULT_MIX = "happy=70,large=10,declined=10,unshippable=10"
EXPECTED: dict[str, str] = {
    "happy": "completed",
    "large": "completed",
    "out_of_stock": "cancelled:out_of_stock",
    "declined": "cancelled:payment_declined",
    "flaky": "completed",
    "timeout": "cancelled:payment_timeout",
    "unshippable": "cancelled:shipment_failed",
    "bounce": "completed",
}
"""How each scenario's order ends when the platform keeps up (``completed`` or
``cancelled:<reason>``); anything else is reported as unexpected (e.g. a step deadline)."""
TERMINAL = ("order.completed", "order.cancelled")
APPROVER = "bench"


def parse_mix(text: str) -> dict[str, int]:
    """``happy=70,large=10`` → ``{"happy": 70, "large": 10}``: scenario names and weights.

    Raises:
        ValueError: an unknown scenario, a weight that is not a non-negative integer, or
            weights that add up to zero.
    """
    mix: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        name = name.strip()
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; one of: {', '.join(SCENARIOS)}")
        try:
            value = int(weight) if sep else 1
        except ValueError:
            raise ValueError(f"{part!r}: the weight must be an integer") from None
        if value < 0:
            raise ValueError(f"{part!r}: the weight must not be negative")
        mix[name] = mix.get(name, 0) + value
    if sum(mix.values()) <= 0:
        raise ValueError(f"the mix {text!r} has no positive weight")
    return mix


def assign_scenarios(mix: dict[str, int], orders: int, seed: int = 0) -> list[str]:
    """``orders`` scenario names in the proportions of ``mix`` (largest remainder, so the
    counts are exact), shuffled reproducibly."""
    total = sum(mix.values())
    quotas = {name: orders * weight / total for name, weight in mix.items()}
    counts = {name: math.floor(q) for name, q in quotas.items()}
    by_remainder = sorted(quotas, key=lambda n: (counts[n] - quotas[n], list(mix).index(n)))
    for name in by_remainder[: orders - sum(counts.values())]:
        counts[name] += 1
    names = [name for name, count in counts.items() for _ in range(count)]
    random.Random(seed).shuffle(names)
    return names


def warm_up_scenarios(mix: dict[str, int], orders: int) -> list[str]:
    """What a benchmark places before its clock starts: one order of each scenario of the
    mix (every path's code is run), then ``orders`` more in its proportions."""
    return [name for name, weight in mix.items() if weight > 0] + assign_scenarios(
        mix, orders, seed=1
    )
