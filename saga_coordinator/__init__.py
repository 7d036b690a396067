"""The saga coordinator: policy, completion and compensation of every saga it has a definition of.

Services react to each other's events; the coordinator watches each saga's whole flow and
decides what no single service can: whether a person must decide, when the saga is complete,
and how to undo it (newest step first, each compensation retried until acknowledged) when a
step fails or misses its durable deadline. What a saga looks like is its definition's
(:mod:`sagas`); the coordinator knows no saga by name.

Layers, dependencies pointing inward:

* :mod:`~saga_coordinator.engine` — the pure, generic core: facts, the fold, timers, decide,
  interpreting any :class:`~sagas.definition.SagaDefinition`;
* :mod:`~saga_coordinator.legacy` and :mod:`~saga_coordinator.facts` — the order saga's facts
  stored before definitions, read as the engine's (the core that wrote them now lives only
  in the tests, ``tests/unit/saga_coordinator/old_core``, as the reference the engine is
  checked against);
* :mod:`~saga_coordinator.store` — fact streams and durable timers (PostgreSQL, in-memory);
* :mod:`~saga_coordinator.handlers` and :mod:`~saga_coordinator.timers` — the adapters that
  load, decide and store, for incoming events and for due timers;
* :mod:`~saga_coordinator.context` — the settings and the handlers' and timers' context;
* :mod:`~saga_coordinator.service` — :func:`~saga_coordinator.service.build`, the process.

This module holds only the process's name and :data:`PROCESS`, as ``choreo.registry`` lists it.
"""

from __future__ import annotations

from events.process import ProcessSpec
from sagas.shipped import SAGAS

SERVICE_NAME = "saga-coordinator"
"""The consumer group, schema and envelope producer name derive from it."""

PROCESS = ProcessSpec(
    name=SERVICE_NAME,
    builder="saga_coordinator.service:build",
    produces=SAGAS.emits,
    aliases=("coordinator",),
)
"""The saga coordinator process; ``choreo replay coordinator`` names it too."""
