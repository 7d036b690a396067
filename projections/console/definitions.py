"""The definitions page: every saga type and version the coordinator runs, drawn.

For each definition (:data:`sagas.shipped.SAGAS`, or the registry the app was built with):
its flow drawn as SVG on the server (:mod:`projections.console.flow`), a table of its steps
(trigger, success and failure events, deadlines, compensation; :func:`sagas.drawing.rows`,
the rows ``choreo sagas show`` prints), its knobs with their values, its start event's fields
(as ``choreo schemas show`` lists them) with the commands that start one, and its Mermaid
text (:func:`sagas.drawing.mermaid`) to paste elsewhere. The values are the definition's as the
API process knows them: the coordinator's ``CHOREO_SAGA_*`` settings override knobs in the
coordinator's process.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from events.schema_fields import payload_fields
from events.schemas import SchemaRegistry
from projections.console.flow import layout
from projections.console.pages import SignedIn, page
from sagas.definition import SagaDefinition
from sagas.drawing import mermaid, rows
from sagas.registry import SagaRegistry

router = APIRouter(include_in_schema=False)


def _knob_value(value: Any) -> str:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _anchor(registry: SagaRegistry, saga_type: str) -> dict[str, str]:
    """A saga type and where its current version is on the page."""
    return {"saga_type": saga_type, "anchor": f"{saga_type}-v{registry.current(saga_type).version}"}


def described(d: SagaDefinition, schemas: SchemaRegistry, registry: SagaRegistry) -> dict[str, Any]:
    """One definition as the page shows it, with how it links to the other types: the types
    whose key its start captures (a return names its order) and those naming it."""
    values = d.knob_values()
    start = schemas.latest(d.start.event_type)
    return {
        "saga_type": d.saga_type,
        "version": d.version,
        "key": d.key,
        "names": [
            {"key": name, **_anchor(registry, other)}
            for name, other in registry.names(d.saga_type).items()
        ],
        "named_by": [_anchor(registry, other) for other in registry.naming(d.saga_type)],
        "start": d.start.event_type,
        "start_version": start.version,
        "start_fields": payload_fields(start.raw),
        "reasons": list(d.reasons),
        "rows": rows(d),
        "flow": layout(d),
        "mermaid": mermaid(d),
        "knobs": [
            {"name": name, "value": _knob_value(values[name]), "about": knob.description}
            for name, knob in sorted(d.knobs().items())
        ],
    }


@router.get("/console/definitions")
async def definitions_page(request: Request, user: SignedIn) -> HTMLResponse:
    """Every saga definition, newest version of each type first."""
    registry: SagaRegistry = request.app.state.definitions
    schemas: SchemaRegistry = request.app.state.operations.codec.registry
    shown = sorted(registry, key=lambda d: (d.saga_type, -d.version))
    return page(
        request,
        "definitions.html",
        user,
        section="definitions",
        definitions=[described(d, schemas, registry) for d in shown],
    )
