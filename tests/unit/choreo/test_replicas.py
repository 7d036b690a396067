"""`--replicas NAME=N` and CHOREO_REPLICAS: parsing, and the instances they make."""

from __future__ import annotations

import pytest

from choreo.replicas import Instance, instances, parse
from events.errors import ChoreoError


def test_items_by_registered_name_later_ones_winning():
    assert parse(["payment=2,coordinator=2", "", " projector = 3 ", "payment=1"]) == {
        "payment": 1,
        "saga-coordinator": 2,
        "projector": 3,
    }


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("payment", "not NAME=N"),
        ("payment=0", "not NAME=N"),
        ("payment=two", "not NAME=N"),
        ("billing=2", "unknown process 'billing'"),
        ("api=2", "api listens on one port"),
    ],
)
def test_bad_items_are_refused(spec: str, error: str):
    with pytest.raises(ChoreoError, match=error):
        parse([spec])


def test_one_api_is_fine():
    assert parse(["api=1"]) == {"api": 1}


def test_instances_are_labelled_by_number():
    made = instances(["payment", "crm"], {"payment": 3})
    assert [i.label for i in made] == ["payment", "payment#2", "payment#3", "crm"]
    assert {i.process for i in made[:3]} == {"payment"}


def test_replicas_get_an_instance_id_a_single_process_none(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert Instance("crm").env() == {}
    assert Instance("payment", 2, 2).env() == {
        "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=payment#2"
    }
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
    assert Instance("payment", 1, 2).env() == {
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci,service.instance.id=payment"
    }
