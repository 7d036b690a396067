"""An operator token's scope: the saga types whose human tasks it answers."""

from __future__ import annotations

from projections.tokens import Principal, TokenRecord


def _record(role: str, saga_types: list[str] | None) -> TokenRecord:
    return TokenRecord.model_validate(
        {"id": "abcd1234", "name": "ann", "role": role, "hash": "x", "saga_types": saga_types}
    )


def test_an_unscoped_operator_answers_every_type_and_redrives():
    caller = _record("operator", None).principal()
    assert caller.may_answer("order")
    assert caller.may_answer("trip")
    assert caller.unscoped_operator
    assert caller.scope == "every saga type"


def test_a_scoped_operator_answers_its_types_only_and_redrives_nothing():
    caller = _record("operator", ["return", "trip"]).principal()
    assert caller.may_answer("return")
    assert not caller.may_answer("order")
    assert not caller.unscoped_operator
    assert caller.scope == "return, trip"


def test_a_viewer_answers_nothing():
    caller = Principal(token_id="x", name="vic", role="viewer")
    assert not caller.may_answer("order")
    assert not caller.unscoped_operator


def test_a_record_written_before_scopes_existed_reads_as_unscoped():
    record = TokenRecord.model_validate({"id": "a", "name": "n", "role": "operator", "hash": "h"})
    assert record.saga_types is None
    assert record.principal().unscoped_operator
