"""A chaos run's configuration and the schedule of its faults.

The faults are spread over the time the orders take to place (``orders / rate``), between a
tenth and four fifths of it, so that every fault meets orders in flight and the last orders
still meet the platform's recovery. Without a seed the schedule is fixed: the faults in the
order of :data:`FAULT_KINDS`, evenly spaced. With a seed their order and times are random,
and the same seed gives the same schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from choreo.registry import NAMES
from events.errors import ChoreoError

FAULT_KINDS: dict[str, str] = {
    "kill": "SIGKILL one instance of every kind of process (the supervisor restarts it)",
    "stop": "SIGSTOP one service past its consumer session timeout, then SIGCONT",
    "broker": "restart a Kafka node (with three nodes: one, then the controller quorum's leader)",
    "postgres": "restart PostgreSQL (fast shutdown: every connection is cut)",
    "resend": "re-send logged messages byte for byte, and orders again as a client retry",
    "malformed": "inject values that are not events on every topic",
}
"""Every fault kind, with what it does (the order of a schedule without a seed)."""

DEFAULT_FAULTS = "kill,stop,resend,malformed"
"""The faults a run injects unless told: none that restarts shared infrastructure."""

STOPPABLE = ("inventory", "payment", "shipping", "crm", "email", "saga-coordinator", "projector")
"""Processes a ``stop`` fault may freeze: every consumer (the API has no consumer group)."""


@dataclass(frozen=True)
class ChaosConfig:
    """What a chaos run does.

    Attributes:
        orders: Orders to place.
        rate: Orders per second.
        mix: Scenario weights (see :func:`choreo.mix.parse_mix`).
        faults: Fault kinds to inject (keys of :data:`FAULT_KINDS`).
        seed: With a seed, random fault order and times (reproducible); None: fixed schedule.
        stop_s: How long a ``stop`` fault freezes its process (past the session timeout).
        broker_down_s: How long a restarted Kafka node stays down.
        resend: Logged messages a ``resend`` fault publishes again byte for byte (as many
            orders again are placed as client retries, at most a tenth of the orders).
        quiet_timeout_s: How long to wait for quiescence once every order is placed.
        returns: Percent of the orders whose customer sends items back once the order
            settled (see :mod:`choreo.chaos.returns`); 0: no returns.
        verify_projections: Rebuild the read models from the log and compare with the live ones.
    """

    orders: int
    rate: float
    mix: dict[str, int]
    faults: tuple[str, ...]
    seed: int | None = None
    stop_s: float = 12.0
    broker_down_s: float = 5.0
    resend: int = 20
    quiet_timeout_s: float = 300.0
    verify_projections: bool = True
    returns: int = 30

    @property
    def placing_s(self) -> float:
        """How long placing the orders takes at the configured rate."""
        return self.orders / self.rate


@dataclass(frozen=True)
class ScheduledFault:
    """One fault of the schedule: its kind, its target and when (seconds after the start)."""

    at_s: float
    kind: str
    target: str = ""


def parse_faults(text: str) -> tuple[str, ...]:
    """``kill,broker`` → ``("kill", "broker")``; ``all`` is every kind, ``none`` no fault.

    Raises:
        ChoreoError: an unknown kind.
    """
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == ["all"]:
        return tuple(FAULT_KINDS)
    if names == ["none"] or not names:
        return ()
    unknown = [name for name in names if name not in FAULT_KINDS]
    if unknown:
        raise ChoreoError(f"unknown fault(s) {', '.join(unknown)}; any of {', '.join(FAULT_KINDS)}")
    return tuple(dict.fromkeys(names))


def expand(kind: str, brokers: int, stop_target: str) -> list[ScheduledFault]:
    """The faults one kind stands for (times filled in by :func:`schedule`): a kill per kind of
    process, a broker restart per node role (any node, then the quorum's leader, with three)."""
    if kind == "kill":
        return [ScheduledFault(0.0, "kill", name) for name in NAMES]
    if kind == "stop":
        return [ScheduledFault(0.0, "stop", stop_target)]
    if kind == "broker":
        targets = ["node"] if brokers == 1 else ["node", "leader"]
        return [ScheduledFault(0.0, "broker", target) for target in targets]
    return [ScheduledFault(0.0, kind)]


def schedule(config: ChaosConfig, brokers: int = 1) -> list[ScheduledFault]:
    """Every fault of the run with its time, in time order (see the module docstring)."""
    rng = random.Random(config.seed)
    stop_target = rng.choice(STOPPABLE) if config.seed is not None else "payment"
    faults = [f for kind in config.faults for f in expand(kind, brokers, stop_target)]
    if not faults:
        return []
    start, end = 0.1 * config.placing_s, 0.8 * config.placing_s
    if config.seed is None:
        step = (end - start) / max(len(faults) - 1, 1)
        times = [start + i * step for i in range(len(faults))]
    else:
        rng.shuffle(faults)
        times = sorted(rng.uniform(start, end) for _ in faults)
    return [
        ScheduledFault(round(at, 3), f.kind, f.target) for at, f in zip(times, faults, strict=True)
    ]
