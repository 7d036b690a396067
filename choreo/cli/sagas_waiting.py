"""`choreo sagas waiting | approve | reject`: the sagas of every type waiting for a person's
answer (:mod:`projections.waiting`, as the API's ``GET /sagas/waiting`` and the console's
approvals page list them), and the answer to the human task one waits on, built by its
definition (``HumanTask.answer``) as the API's ``POST /sagas/{type}/{key}/approve|reject``
builds it, published into the saga's trace.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from choreo.cli.common import (
    JsonFlag,
    awaiting_an_answer,
    choreo_client,
    fail,
    out,
    print_json,
    publish_traced,
    readable,
    stacked,
    to_the_minute,
)
from choreo.cli.sagas import (
    SagaKey,
    SagaType,
    app,
    read_sagas,
    refuse_an_unknown_type,
    running_definitions,
)
from events.errors import ChoreoError
from projections.console.charts import money, span
from sagas.definition import Answer, HumanTask, SagaDefinition


@app.command("waiting")
def sagas_waiting(
    saga_type: Annotated[str | None, typer.Option("--type", help="Only this type.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Sagas of every type waiting for a person's answer, the soonest to expire first: the
    task, the amount asked about, since when, the time left and what happens then. Answer
    one with `choreo sagas approve|reject TYPE KEY`."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from projections import waiting

    registry = running_definitions()
    refuse_an_unknown_type(registry, saga_type)
    entries, total = read_sagas(
        lambda q: waiting.waiting(q, registry, saga_type=saga_type, limit=limit)
    )
    if as_json:
        print_json({"waiting": entries, "count": len(entries), "total": total})
        return
    if not entries:
        out.print("nothing waits for a person's answer")
        return
    now = datetime.now(UTC)
    table = Table("saga", "waits on", "amount", "since (UTC)", "time left")
    for e in entries:
        table.add_row(
            stacked(e["saga"]["saga_key"], e["saga"]["saga_type"]),
            e["task"],
            _amounts(e["amounts"]),
            to_the_minute(e["requested_at"]),
            _left(e, now),
        )
    out.print(readable(table, "saga"))
    if total > len(entries):
        out.print(f"[dim]{total - len(entries)} more wait; the {len(entries)} soonest shown[/]")


def _amounts(amounts: list[dict[str, Any]]) -> str:
    if not amounts:
        return "—"
    first, *others = amounts
    # The others in the first's currency, which they share: `threshold 1,000.00` fits at 80.
    lines = [f"[dim]{a['name']} {money(a['minor'], None)}[/]" for a in others]
    return "\n".join([money(first["minor"], first["currency"]), *lines])


def _left(entry: dict[str, Any], now: datetime) -> str:
    if entry["expires_at"] is None:
        return "—"
    left = (datetime.fromisoformat(entry["expires_at"]) - now).total_seconds()
    if left <= 0:
        return f"[red]overdue {span(left)}[/]\n[dim]{entry['on_timeout']} due[/]"
    return stacked(span(left), f"then {entry['on_timeout']}")


@app.command("approve")
def sagas_approve(
    saga_type: SagaType,
    saga_key: SagaKey,
    by: Annotated[str, typer.Option("--by", help="Who approves.")],
    reason: Annotated[str | None, typer.Option(help="Why (optional).")] = None,
) -> None:
    """Approve the human task a saga of any type waits on: publishes the event its
    definition builds (`return.approved` for a return), in the saga's trace."""
    if not by.strip():
        fail(ChoreoError("approve needs the approver's name (--by)"))
    _answer(saga_type, saga_key, approve=True, by=by, reason=reason)


@app.command("reject")
def sagas_reject(
    saga_type: SagaType,
    saga_key: SagaKey,
    by: Annotated[str, typer.Option("--by", help="Who rejects.")],
    reason: Annotated[str, typer.Option(help="Why.")],
) -> None:
    """Reject the human task a saga of any type waits on, with a reason: the saga is
    compensated as its definition says."""
    if not by.strip() or not reason.strip():
        fail(ChoreoError("reject needs the approver's name (--by) and a --reason"))
    _answer(saga_type, saga_key, approve=False, by=by, reason=reason)


def _answer(saga_type: str, key: str, *, approve: bool, by: str, reason: str | None) -> None:
    registry = running_definitions()
    try:
        current = registry.current(saga_type)
    except KeyError as exc:
        fail(ChoreoError(str(exc.args[0])))
    row, parent = awaiting_an_answer(saga_type, key, current.start.event_type)
    try:
        definition = registry.get(saga_type, row["version"]) if row else current
    except KeyError as exc:
        fail(ChoreoError(str(exc.args[0])))
    answer = _answer_of(definition, row)
    event = answer(approve, by, reason)

    async def publish() -> None:
        async with choreo_client() as client:
            await client.answer(saga_type, key, event, trace_parent=parent)

    publish_traced(publish)
    out.print(f"{'approved' if approve else 'rejected'} {saga_type} {key} ({event.event_type})")


def _answer_of(definition: SagaDefinition, row: dict[str, Any] | None) -> Answer:
    """How the task the saga waits on (its row's) builds an answer; without read models, the
    definition's one task that builds answers, if it has exactly one."""
    from projections import sagas_queries

    name = f"{definition.saga_type} v{definition.version}"
    if row is None:
        answers = [t.answer for t in definition.tasks if t.answer is not None]
        if len(answers) != 1:
            fail(ChoreoError(f"cannot tell which task of {name} to answer: no read models"))
        return answers[0]
    waiting = sagas_queries.waiting_on(row) or ""
    task = definition.node(waiting)
    if not isinstance(task, HumanTask) or task.answer is None:
        fail(ChoreoError(f"{name}'s {waiting} takes no answer here"))
    return task.answer
