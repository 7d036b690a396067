"""Replicas: several instances of one process, sharing its consumer group, schema and outbox.

``choreo run --replicas payment=2`` (or ``CHOREO_REPLICAS="payment=2,coordinator=2"``) starts
two payment processes. Kafka splits the group's partitions between them; what else they share
is made safe where two instances could act on the same rows: each order's handlers lock the
order (services) or the saga (the coordinator), the inbox absorbs a message both see around a
rebalance, one relay at a time publishes the outbox (:class:`~events.outbox.OutboxRelay`), due
retries and due timers are claimed with ``FOR UPDATE SKIP LOCKED``
(:class:`~events.retry_queue.PostgresRetryQueue`, :mod:`saga_coordinator.timers`), and the
projector's batches take its lock. The API listens on one port, so it runs once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from choreo import registry
from events.errors import ChoreoError

SINGLETONS = frozenset({"api"})
"""Processes that cannot have replicas (the API binds its port)."""


@dataclass(frozen=True, slots=True)
class Instance:
    """Instance ``number`` (from 1) of process ``process``, of ``count``."""

    process: str
    number: int = 1
    count: int = 1

    @property
    def label(self) -> str:
        """``payment`` for the first instance, ``payment#2`` for the second, ...: what log
        lines and the e2e platform's log files are named by."""
        return self.process if self.number == 1 else f"{self.process}#{self.number}"

    def env(self) -> dict[str, str]:
        """Environment of the instance's process: with replicas, an OpenTelemetry
        ``service.instance.id``, so each instance's spans and metrics are told apart (two
        instances' counters under one identity would overwrite each other)."""
        if self.count == 1:
            return {}
        attributes = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
        own = f"service.instance.id={self.label}"
        return {"OTEL_RESOURCE_ATTRIBUTES": f"{attributes},{own}" if attributes else own}


def parse(specs: Iterable[str]) -> dict[str, int]:
    """``NAME=N`` items (each may hold several, comma-separated) as ``{process: N}``, by the
    processes' registered names (``coordinator`` is ``saga-coordinator``).

    Raises:
        ChoreoError: an item is not ``NAME=N`` with N ≥ 1, names no process, or asks for
            replicas of a process that runs once.
    """
    counts: dict[str, int] = {}
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, number = item.partition("=")
            if not sep or not number.strip().isdigit() or int(number) < 1:
                raise ChoreoError(f"replicas: {item!r} is not NAME=N (N at least 1)")
            try:
                process = registry.get(name.strip()).name
            except registry.UnknownProcess as exc:
                raise ChoreoError(f"replicas: {exc}") from None
            if process in SINGLETONS and int(number) > 1:
                raise ChoreoError(f"replicas: {process} listens on one port and runs once")
            counts[process] = int(number)
    return counts


def instances(names: Sequence[str], counts: Mapping[str, int]) -> list[Instance]:
    """Every instance to run of processes ``names``, ``counts[name]`` of each (default 1)."""
    return [
        Instance(name, number, counts.get(name, 1))
        for name in names
        for number in range(1, counts.get(name, 1) + 1)
    ]
