"""The read side: the projector (domain topics → event log + saga read model) and the HTTP
API and console over it.

This module holds only the two processes' specs, as ``choreo.registry`` lists them: importing
it does not import the projector's consumer or the API's web stack.
"""

from __future__ import annotations

from contracts.catalog import CATALOG, OrderApproved, OrderRejected
from events.process import ProcessSpec

PROJECTOR = ProcessSpec(
    name="projector",
    runner="projections.projector:run",
    consumes=CATALOG.models,
)
"""The projector: reads every event type (and dead-letters what does not decode)."""

API = ProcessSpec(name="api", runner="projections.api:run", produces=(OrderApproved, OrderRejected))
"""The API and console: reads the projector's tables, consumes no event, publishes the
operator's decisions (and redrives dead letters: their original records to their own topics,
and a marker to the dead-letter topic)."""
