"""A definition drawn for people: table rows and a Mermaid flow, from the order saga."""

from __future__ import annotations

from sagas.drawing import mermaid, rows
from sagas.order import V1


def test_rows_tell_each_steps_trigger_outcomes_deadlines_and_compensation():
    by_step = {row["step"]: row for row in rows(V1)}
    assert list(by_step) == ["inventory", "approval", "payment", "shipping", "crm", "email"]
    assert by_step["inventory"]["triggered_by"] == "order.placed"
    assert by_step["inventory"]["deadlines"] == "answer 30s → out_of_stock"
    # The CRM's silence cancels the shipment: the reason says so, and the words why.
    assert by_step["crm"]["deadlines"] == "answer 30s → shipment_failed (shipment cancelled)"
    assert by_step["inventory"]["participant"] == "inventory"
    assert by_step["approval"]["participant"] is None
    assert by_step["inventory"]["compensation"] == {
        "command": "inventory.release",
        "acknowledged_by": "inventory.released",
        "ack_timeout": "10s",
        "max_attempts": 5,
    }
    assert by_step["approval"]["kind"] == "human task"
    assert by_step["approval"]["when"] == "total ≥ approval threshold"
    assert by_step["approval"]["deadlines"] == "timeout 24h → reject"
    assert by_step["payment"]["fails_on"] == ["payment.declined → payment_declined"]
    assert by_step["email"]["critical"] is False
    assert by_step["email"]["compensation"] is None


def test_rows_show_the_knobs_in_force():
    tuned = V1.with_knobs({"payment_deadline": V1.knob_values()["payment_deadline"] * 2})
    payment = next(r for r in rows(tuned) if r["step"] == "payment")
    assert payment["deadlines"] == "answer 60s → payment_timeout"


def test_the_mermaid_flow_has_every_step_branch_join_and_compensation():
    text = mermaid(V1)
    assert text.startswith("flowchart LR\n")
    for edge in (
        "start --> inventory",
        "inventory --> approval",
        "approval -- order.approved --> payment",
        "payment -- payment.charged --> shipping",
        "shipping -- shipment.scheduled --> crm",
        "shipping -- shipment.scheduled --> email",
        "crm --> done",
        "email --> done",
        "payment -.-> undo_payment",
        "style email stroke-dasharray: 5 5",
    ):
        assert f"    {edge}\n" in text, edge
    assert 'approval{"approval<br/>total ≥ approval threshold"}' in text
    assert "undo_crm" not in text
