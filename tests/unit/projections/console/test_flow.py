"""The order saga's flow as the definitions page lays it out."""

from __future__ import annotations

from projections.console.flow import COLUMN, layout
from sagas.shipped import SAGAS


def test_the_order_saga_is_laid_out_in_columns_with_compensations_below():
    flow = layout(SAGAS.current("order"))
    boxes = {n.id: n for n in flow.nodes}
    column = {name: round((box.x - boxes["start"].x) / COLUMN) for name, box in boxes.items()}
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
