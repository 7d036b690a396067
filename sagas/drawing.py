"""A saga definition for people: its steps as table rows, and its flow as a Mermaid diagram.

The rows are what ``choreo sagas show`` prints and ``--json`` emits; the Mermaid text is what
the console draws (and what renders in any Markdown viewer that knows Mermaid).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sagas.definition import HumanTask, SagaDefinition, Step


def _seconds(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    return f"{seconds:g}s"


def rows(d: SagaDefinition) -> list[dict[str, Any]]:
    """One row per step or human task, in the definition's order."""
    found = []
    for node in d.nodes:
        if isinstance(node, HumanTask):
            found.append(
                {
                    "step": node.name,
                    "kind": "human task",
                    "after": list(node.after),
                    "triggered_by": None,
                    "participant": None,
                    "when": node.when.description,
                    "succeeds_on": [node.approve_on.event_type],
                    "fails_on": [
                        f"{node.reject_on.on.event_type} → {node.reject_on.reason}"
                        if node.reject_on.on
                        else node.reject_on.reason
                    ],
                    "deadlines": f"timeout {_seconds(d.value(node.timeout))}"
                    f" → {d.value(node.on_timeout)}",
                    "compensation": None,
                    "critical": True,
                }
            )
            continue
        found.append(_step_row(d, node))
    return found


def _step_row(d: SagaDefinition, step: Step) -> dict[str, Any]:
    limits = step.deadlines
    pick_up = d.value(limits.pick_up) if limits.pick_up is not None else None
    answer = d.value(limits.answer) if limits.answer is not None else None
    deadlines = []
    if pick_up is not None:
        deadlines.append(f"pick up {_seconds(pick_up)}")
    if answer is not None:
        deadlines.append(f"answer {_seconds(answer)}")
    if deadlines and limits.reason:
        deadlines.append(f"→ {limits.reason}")
        if limits.explain:  # why that reason, where the step's own name does not say
            deadlines.append(f"({limits.explain})")
    comp = step.compensation
    return {
        "step": step.name,
        "kind": "step",
        "after": list(step.after),
        "triggered_by": step.triggered_by.event_type if step.triggered_by else d.start.event_type,
        "participant": step.participant,
        "when": None,
        "succeeds_on": [s.event_type for s in step.succeeded_on],
        "fails_on": [f"{x.on.event_type} → {x.reason}" for x in step.fails if x.on is not None],
        "deadlines": " ".join(deadlines) or "-",
        "compensation": (
            None
            if comp is None
            else {
                "command": comp.command.event_type,
                "acknowledged_by": comp.acknowledged_by.event_type
                if comp.acknowledged_by
                else None,
                "ack_timeout": _seconds(d.value(comp.ack_timeout)),
                "max_attempts": d.value(comp.max_attempts),
            }
        ),
        "critical": step.critical,
    }


def mermaid(d: SagaDefinition) -> str:
    """The definition's flow: start, steps (human tasks as diamonds, optional steps dashed),
    the end, and each compensation as a dotted edge back from its step."""
    lines = ["flowchart LR", f'    start(["{d.start.event_type}"])']
    for node in d.nodes:
        if isinstance(node, HumanTask):
            lines.append(f'    {node.name}{{"{node.name}<br/>{node.when.description}"}}')
        else:
            label = node.name if node.critical else f"{node.name} (optional)"
            lines.append(f'    {node.name}["{label}"]')
    for node in d.nodes:
        if not node.after:
            lines.append(f"    start --> {node.name}")
        for before in node.after:
            edge = (
                f"-- {node.triggered_by.event_type} -->"
                if isinstance(node, Step) and node.triggered_by is not None
                else "-->"
            )
            lines.append(f"    {before} {edge} {node.name}")
    ends = [n.name for n in d.nodes if not any(n.name in m.after for m in d.nodes)]
    lines.append('    done(["completed"])')
    lines.extend(f"    {name} --> done" for name in ends)
    for step in d.steps:
        if step.compensation is not None:
            undo = f"undo_{step.name}"
            lines.append(f'    {undo}[/"{step.compensation.command.event_type}"/]')
            lines.append(f"    {step.name} -.-> {undo}")
        if not step.critical:
            lines.append(f"    style {step.name} stroke-dasharray: 5 5")
    return "\n".join(lines) + "\n"
