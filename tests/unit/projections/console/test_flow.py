"""The saga's flows as the definitions page lays them out."""

from __future__ import annotations

import pytest

from projections.console.flow import DETAIL_CHAR, LABEL_CHAR, NAME_CHAR, PAD, layout
from sagas.shipped import SAGAS


def test_the_order_saga_is_laid_out_in_columns_with_compensations_below():
    flow = layout(SAGAS.current("order"))
    boxes = {n.id: n for n in flow.nodes}
    lefts = sorted({box.x for box in boxes.values()})
    column = {name: lefts.index(box.x) for name, box in boxes.items()}
    assert column == {
        "start": 0,
        "inventory": 1,
        "approval": 2,
        "payment": 3,
        "shipping": 4,
        "crm": 5,
        "email": 5,  # in parallel with crm
        "done": 6,
        "undo_inventory": 1,
        "undo_payment": 3,
        "undo_shipping": 4,
    }
    assert boxes["crm"].y < boxes["email"].y
    assert {n.kind for n in flow.nodes if n.id.startswith("undo_")} == {"undo"}
    assert all(boxes[f"undo_{s}"].y > boxes[s].y for s in ("inventory", "payment", "shipping"))
    assert (boxes["approval"].kind, boxes["email"].kind) == ("task", "optional")
    assert boxes["undo_payment"].label == "payment.refund"
    labels = [e.label for e in flow.edges if e.label]
    # The fan-out to crm and email is labelled once.
    assert labels == ["order.approved", "payment.charged", "shipment.scheduled"]
    assert len([e for e in flow.edges if e.kind == "flow"]) == 8
    assert len([e for e in flow.edges if e.kind == "undo"]) == 3
    assert all(b.x + b.w <= flow.width and b.y + b.h <= flow.height for b in flow.nodes)


@pytest.mark.parametrize("saga_type", SAGAS.types)
def test_every_text_fits_its_box_and_every_label_its_curve(saga_type: str):
    # The return saga's "payment.return_refunded" ran under the boxes at each end of its
    # curve, and "refund ≥ approval threshold" out of its box, in a layout of fixed widths.
    flow = layout(SAGAS.current(saga_type))
    boxes = {n.id: n for n in flow.nodes}
    for box in flow.nodes:
        assert len(box.label) * NAME_CHAR + 2 * PAD <= box.w, box.label
        assert len(box.detail) * DETAIL_CHAR + 2 * PAD <= box.w, box.detail
    for edge in flow.edges:
        if edge.label:
            source, target = boxes[edge.source], boxes[edge.target]
            room = target.x - (source.x + source.w)
            assert len(edge.label) * LABEL_CHAR + 2 * PAD <= room, edge.label
            assert source.x + source.w < edge.lx < target.x
    same_column = [n for n in flow.nodes if n.x == boxes["start"].x]
    assert {n.w for n in same_column} == {boxes["start"].w}
