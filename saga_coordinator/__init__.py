"""The saga coordinator: policy, completion and compensation of the order choreography.

Services react to each other's events; the coordinator watches the whole flow per order and
decides what no single service can: whether an order needs a human's approval, when it is
complete, and how to undo it (newest step first, each compensation retried until acknowledged)
when a step fails or misses its durable deadline.

Layers, dependencies pointing inward:

* :mod:`~saga_coordinator.definition` — saga definitions by version (steps, policy, deadlines);
* :mod:`~saga_coordinator.facts` and :mod:`~saga_coordinator.saga` — the pure core: facts, the
  fold (``evolve``) and ``decide``;
* :mod:`~saga_coordinator.store` — fact streams and durable timers (PostgreSQL, in-memory);
* :mod:`~saga_coordinator.handlers` and :mod:`~saga_coordinator.timers` — the adapters that
  load, decide and store, for incoming events and for due timers;
* :mod:`~saga_coordinator.context` — the settings and the handlers' and timers' context;
* :mod:`~saga_coordinator.service` — :func:`~saga_coordinator.service.build`, the process.

This module holds only the process's name and :data:`PROCESS`, as ``choreo.registry`` lists it.
"""

from __future__ import annotations

from contracts.catalog import (
    InventoryRelease,
    OrderApprovalRequested,
    OrderApproved,
    OrderCancelled,
    OrderCompleted,
    OrderNeedsAttention,
    OrderRejected,
    PaymentRefund,
    ShipmentCancel,
)
from events.process import ProcessSpec

SERVICE_NAME = "saga-coordinator"
"""The consumer group, schema and envelope producer name derive from it."""

PROCESS = ProcessSpec(
    name=SERVICE_NAME,
    builder="saga_coordinator.service:build",
    produces=(
        OrderApprovalRequested,
        OrderApproved,
        OrderRejected,
        OrderNeedsAttention,
        OrderCompleted,
        OrderCancelled,
        InventoryRelease,
        PaymentRefund,
        ShipmentCancel,
    ),
    aliases=("coordinator",),
)
"""The saga coordinator process; ``choreo replay coordinator`` names it too."""
