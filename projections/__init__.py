"""The read side: the projector (domain topics → event log + order read model) and the HTTP
API over it.

This module holds only the two processes' specs, as ``choreo.registry`` lists them: importing
it does not import the projector's consumer or the API's web stack.
"""

from __future__ import annotations

from contracts.catalog import CATALOG
from events.process import ProcessSpec

PROJECTOR = ProcessSpec(
    name="projector",
    runner="projections.projector:run",
    consumes=CATALOG.models,
)
"""The projector: reads every event type (and dead-letters what does not decode)."""

API = ProcessSpec(name="api", runner="projections.api:run")
"""The API: reads the projector's tables, consumes and produces no event."""
