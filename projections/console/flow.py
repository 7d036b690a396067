"""A saga definition's flow laid out for drawing as SVG on the server (no diagram library).

The layout is layered: the start event in the first column, each step or human task one
column right of the latest step it comes after (so a join sits right of every branch it
joins), the end last; nodes of a column stacked in definition order. Each compensation sits
under the step it undoes, joined by a dotted edge. Edges are cubic curves from a node's right
side to the next one's left side, labelled with the event that triggers the next step. The
template draws what :func:`layout` computes; the same definition always gives the same
picture.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sagas.definition import HumanTask, SagaDefinition, Step

NODE_W, NODE_H = 150.0, 46.0
"""The narrowest box; a box is wider when its text needs it (all of one column alike)."""
GAP = 120.0
"""The narrowest space between two columns; wider when a curve's label needs it."""
ROW = 78.0
MARGIN = 16.0
# Text widths in the drawing's units, from the console's fonts as Chromium measures them:
# a box's name (12px, bold) at most ~8 a character, its second line (10.5px) ~5.9 on long
# lines, a curve's label (10px monospace) 6.02.
NAME_CHAR, DETAIL_CHAR, LABEL_CHAR = 8.0, 5.9, 6.02
PAD = 8.0
"""Space kept on each side of a box's text and of a curve's label."""


@dataclass(frozen=True)
class FlowNode:
    """A box of the drawing: ``kind`` is start, step, optional, task, end or undo."""

    id: str
    label: str
    detail: str
    kind: str
    x: float
    y: float
    w: float = NODE_W
    h: float = NODE_H


@dataclass(frozen=True)
class FlowEdge:
    """A curve between two boxes (``kind``: flow or undo), with its label's position and the
    ids of the boxes it joins."""

    path: str
    label: str
    lx: float
    ly: float
    kind: str
    source: str = ""
    target: str = ""


@dataclass(frozen=True)
class Flow:
    """A laid-out definition: boxes, curves, the drawing's size."""

    nodes: list[FlowNode]
    edges: list[FlowEdge]
    width: float
    height: float


def _columns(d: SagaDefinition) -> dict[str, int]:
    column: dict[str, int] = {}
    for node in d.nodes:  # a definition lists a node after the nodes it comes after
        column[node.name] = 1 + max((column[a] for a in node.after), default=0)
    return column


def box_width(label: str, detail: str) -> float:
    """The width a box needs for its two lines of text (at least :data:`NODE_W`)."""
    return max(NODE_W, len(label) * NAME_CHAR + 2 * PAD, len(detail) * DETAIL_CHAR + 2 * PAD)


def gap_width(labels: list[str]) -> float:
    """The space two columns need for the labels of the curves between them."""
    return max([GAP, *(len(label) * LABEL_CHAR + 4 * PAD for label in labels)])


def _box(node: Step | HumanTask) -> tuple[str, str]:
    """A node's kind and its second line (what it asks, or the event that ends it well)."""
    if isinstance(node, HumanTask):
        return "task", node.when.description
    done = node.succeeded_on[0].event_type if node.succeeded_on else ""
    return ("step" if node.critical else "optional"), f"✓ {done}"


def _curve(a: FlowNode, b: FlowNode, label: str) -> FlowEdge:
    x1, y1 = a.x + a.w, a.y + a.h / 2
    x2, y2 = b.x, b.y + b.h / 2
    bend = (x2 - x1) / 2
    path = (
        f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    )
    # The label sits over the curve's start, so a fan-out's curves share one label.
    return FlowEdge(path, label, (x1 + x2) / 2, y1 - 6, "flow", a.id, b.id)


def _trigger(node: Step | HumanTask) -> str:
    """The label of the curves into ``node``: the event that triggers it."""
    if isinstance(node, Step) and node.triggered_by is not None:
        return node.triggered_by.event_type
    return ""


def _columns_x(
    d: SagaDefinition, column: dict[str, int], last: int
) -> tuple[dict[int, float], dict[int, float]]:
    """Each column's left edge and its boxes' width: as wide as its widest text, with room
    between columns for the labels of the curves into the next."""
    texts: dict[int, list[tuple[str, str]]] = {0: [(d.start.event_type, "starts the saga")]}
    texts[last] = [("completed", "every critical step done")]
    labels: dict[int, list[str]] = {}
    for node in d.nodes:
        col = column[node.name]
        texts.setdefault(col, []).append((node.name, _box(node)[1]))
        labels.setdefault(col, []).append(_trigger(node))
    for step in d.steps:
        if step.compensation is not None:
            command = step.compensation.command.event_type
            texts[column[step.name]].append((command, f"undoes {step.name}"))
    width = {col: max(box_width(*t) for t in texts.get(col, [("", "")])) for col in range(last + 1)}
    x = {0: MARGIN}
    for col in range(1, last + 1):
        x[col] = x[col - 1] + width[col - 1] + gap_width(labels.get(col, []))
    return x, width


# Long: places every box, then every curve; one pass each keeps the geometry readable.
def layout(d: SagaDefinition) -> Flow:
    """The drawing of ``d``'s flow: start, steps and tasks, the end, and compensations."""
    column = _columns(d)
    last = max(column.values(), default=0) + 1
    x, width = _columns_x(d, column, last)
    stacks: dict[int, list[str]] = {}
    for node in d.nodes:
        stacks.setdefault(column[node.name], []).append(node.name)
    rows = max((len(names) for names in stacks.values()), default=1)
    main_h = rows * ROW

    def y_of(col: int, name: str) -> float:
        names = stacks.get(col, [name])
        offset = (main_h - len(names) * ROW) / 2
        return MARGIN + offset + names.index(name) * ROW + (ROW - NODE_H) / 2

    middle = MARGIN + (main_h - NODE_H) / 2
    boxes = {
        "start": FlowNode(
            "start", d.start.event_type, "starts the saga", "start", x[0], middle, width[0]
        )
    }
    for node in d.nodes:
        kind, detail = _box(node)
        col = column[node.name]
        boxes[node.name] = FlowNode(
            node.name, node.name, detail, kind, x[col], y_of(col, node.name), width[col]
        )
    boxes["done"] = FlowNode(
        "done", "completed", "every critical step done", "end", x[last], middle, width[last]
    )
    undo_y = MARGIN + main_h + ROW * 0.35
    for step in d.steps:
        if step.compensation is not None:
            above = boxes[step.name]
            command = step.compensation.command.event_type
            boxes[f"undo_{step.name}"] = FlowNode(
                f"undo_{step.name}", command, f"undoes {step.name}", "undo", above.x, undo_y,
                above.w,
            )  # fmt: skip

    edges: list[FlowEdge] = []
    for node in d.nodes:
        trigger = _trigger(node)
        for before in node.after or ["start"]:
            labelled = {(e.path.split(" ")[0], e.label) for e in edges}
            edge = _curve(boxes[before], boxes[node.name], trigger)
            if (edge.path.split(" ")[0], trigger) in labelled:
                edge = replace(edge, label="")
            edges.append(edge)
    for node in d.nodes:
        if not any(node.name in other.after for other in d.nodes):
            edges.append(_curve(boxes[node.name], boxes["done"], ""))
    for step in d.steps:
        if step.compensation is not None:
            a, b = boxes[step.name], boxes[f"undo_{step.name}"]
            mid = a.x + a.w / 2
            path = f"M{mid:.1f},{a.y + a.h:.1f} L{mid:.1f},{b.y:.1f}"
            edges.append(FlowEdge(path, "", mid, 0, "undo", a.id, b.id))
    height = (
        undo_y + NODE_H + MARGIN
        if any(b.kind == "undo" for b in boxes.values())
        else main_h + 2 * MARGIN
    )
    return Flow(list(boxes.values()), edges, x[last] + width[last] + MARGIN, height)
