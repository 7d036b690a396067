"""The coordinator's settings and service definition (no infrastructure)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from pydantic import ValidationError

from events.settings import Settings
from saga_coordinator import PROCESS
from saga_coordinator.context import CoordinatorSettings
from saga_coordinator.handlers import router
from saga_coordinator.service import build
from saga_coordinator.store import PostgresSagaStore
from saga_coordinator.store_sql import DDL
from saga_coordinator.timers import SagaTimers
from sagas.order import V1 as ORDER
from sagas.registry import SagaRegistry
from sagas.shipped import SAGAS


def test_defaults_match_the_newest_definition_and_override_nothing(monkeypatch):
    for name in CoordinatorSettings.model_fields:
        monkeypatch.delenv(f"CHOREO_SAGA_{name.upper()}", raising=False)
    settings = CoordinatorSettings()
    assert settings.approval_threshold_minor == 100_000
    assert settings.approval_timeout_s == 86_400
    assert settings.approval_timeout_action == "reject"
    assert (settings.inventory_deadline_s, settings.email_deadline_s) == (30, 15)
    assert (settings.compensation_ack_timeout_s, settings.compensation_max_attempts) == (10, 5)
    assert settings.definition_overrides() == {}


def test_knobs_set_in_the_environment_override_every_version(monkeypatch):
    monkeypatch.setenv("CHOREO_SAGA_APPROVAL_THRESHOLD_MINOR", "5000")
    monkeypatch.setenv("CHOREO_SAGA_APPROVAL_TIMEOUT_ACTION", "escalate")
    monkeypatch.setenv("CHOREO_SAGA_PAYMENT_DEADLINE_S", "2.5")
    monkeypatch.setenv("CHOREO_SAGA_TIMER_POLL_INTERVAL_MS", "50")
    settings = CoordinatorSettings()
    assert settings.definition_overrides() == {
        "approval_threshold_minor": 5000,
        "approval_timeout_action": "escalate",
        "payment_deadline": timedelta(seconds=2.5),
    }
    v2 = dataclasses.replace(ORDER, version=2, start_status="new")
    registry = SagaRegistry([ORDER, v2]).with_knobs(settings.definition_overrides())
    for version in (1, 2):
        knobs = registry.get("order", version).knob_values()
        assert knobs["approval_threshold_minor"] == 5000
        assert knobs["payment_deadline"] == timedelta(seconds=2.5)
    assert registry.get("order", 2).start_status == "new"


def test_invalid_knobs_are_refused(monkeypatch):
    monkeypatch.setenv("CHOREO_SAGA_APPROVAL_TIMEOUT_ACTION", "shrug")
    with pytest.raises(ValidationError):
        CoordinatorSettings()
    monkeypatch.delenv("CHOREO_SAGA_APPROVAL_TIMEOUT_ACTION")
    with pytest.raises(ValidationError):
        CoordinatorSettings(compensation_max_attempts=0)


def test_build_defines_the_saga_coordinator_process():
    settings = Settings(topic_prefix="choreo.")
    service = build(settings, CoordinatorSettings(crm_deadline_s=99))
    assert service.name == "saga-coordinator"
    assert service.router is router
    assert service.ddl == DDL
    assert [task.__name__ for task in service.background] == ["timer_loop", "progress_sampler"]
    assert isinstance(service.timers, SagaTimers)
    assert PROCESS.schema(settings) == "choreo_saga_coordinator"
    # A connection is only used when the store runs; the runtime hands in the schema.
    ctx = service.context(object(), PROCESS.schema(settings))
    assert isinstance(ctx.store, PostgresSagaStore)
    assert ctx.store.schema == "choreo_saga_coordinator"
    assert ctx.definitions.current("order").knob_values()["crm_deadline"] == timedelta(seconds=99)


def test_knobs_of_other_definitions_are_read_by_their_names(monkeypatch):
    monkeypatch.setenv("CHOREO_SAGA_PICKUP_DEADLINE_S", "7")
    monkeypatch.setenv("CHOREO_SAGA_REFUND_APPROVAL_THRESHOLD_MINOR", "900")
    overrides = CoordinatorSettings().definition_overrides()
    assert overrides == {
        "pickup_deadline": timedelta(seconds=7),
        "refund_approval_threshold_minor": 900,
    }
    returns = SAGAS.with_knobs(overrides).current("return").knob_values()
    assert returns["pickup_deadline"] == timedelta(seconds=7)
    assert returns["refund_approval_threshold_minor"] == 900


def test_a_knob_of_another_definition_that_is_not_its_type_is_refused(monkeypatch):
    monkeypatch.setenv("CHOREO_SAGA_PICKUP_DEADLINE_S", "soon")
    with pytest.raises(ValueError, match="CHOREO_SAGA_PICKUP_DEADLINE_S='soon'"):
        CoordinatorSettings().definition_overrides()


def test_without_fair_deadlines_the_coordinator_samples_nothing():
    """Regression: a sampler that returned at once ended the process (the runtime stops when
    a background task ends)."""
    service = build(Settings(topic_prefix="choreo."), CoordinatorSettings(timer_fair=False))
    assert [task.__name__ for task in service.background] == ["timer_loop"]
