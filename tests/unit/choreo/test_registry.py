"""The process registry is complete and consistent: every process builds, replays (services),
is started by ``choreo run`` and accepted by ``choreo service``, and its topics add up."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections import defaultdict

import pytest
from typer.testing import CliRunner

from choreo import registry
from choreo.cli import app
from choreo.client import PRODUCER as CLIENT
from choreo.replay import build_for_replay, process_name
from choreo.supervisor import load_runner
from contracts.catalog import CATALOG
from events.process import ProcessSpec
from events.service import Service, run_service
from events.settings import Settings
from events.topics import topic_for

SETTINGS = Settings(topic_prefix="reg.")

CLIENT_EVENTS = {
    "order.placed",
    "order.approved",
    "order.rejected",
    "return.requested",
    "return.approved",
    "return.rejected",
}
"""What the CLI client (``choreo orders|returns ...``) publishes."""


def test_names_and_aliases_are_unique():
    names = [n for spec in registry.PROCESSES for n in (spec.name, *spec.aliases)]
    assert len(names) == len(set(names))
    assert tuple(spec.name for spec in registry.PROCESSES) == registry.NAMES
    assert len({spec.schema(SETTINGS) for spec in registry.PROCESSES}) == len(registry.PROCESSES)


@pytest.mark.parametrize("spec", registry.SERVICES, ids=lambda s: s.name)
def test_every_service_builds_and_replay_builds(spec: ProcessSpec):
    live = spec.build(SETTINGS)
    replayed = spec.build_for_replay(SETTINGS)
    for service in (live, replayed):
        assert isinstance(service, Service)
        assert service.name == spec.name
        assert service.router.event_types
    assert replayed.router is live.router
    assert build_for_replay(spec.name, SETTINGS).name == spec.name


@pytest.mark.parametrize(
    "spec", [s for s in registry.PROCESSES if not s.is_service], ids=lambda s: s.name
)
def test_every_process_with_its_own_runtime_has_a_runner(spec: ProcessSpec):
    assert callable(spec.load_runner())
    with pytest.raises(TypeError):
        spec.build(SETTINGS)


def test_choreo_service_runs_every_registered_process_and_nothing_else():
    for spec in registry.PROCESSES:
        runner = load_runner(spec.name)
        if spec.is_service:
            assert isinstance(runner, functools.partial)
            assert runner.func is run_service
        else:
            assert runner is spec.load_runner()
    with pytest.raises(registry.UnknownProcess, match="unknown process 'nope'; one of: inv"):
        load_runner("nope")
    result = CliRunner().invoke(app, ["service", "nope"])
    assert result.exit_code == 1
    assert "unknown process 'nope'" in result.output


def test_choreo_run_starts_every_registered_process():
    result = CliRunner().invoke(app, ["run", "--only", "nope"])
    assert result.exit_code == 1
    assert f"one of {', '.join(registry.NAMES)}" in " ".join(result.output.split())


def test_replay_accepts_the_services_and_their_aliases():
    for spec in registry.SERVICES:
        for name in (spec.name, *spec.aliases):
            assert process_name(name) == spec.name
    assert process_name("coordinator") == "saga-coordinator"


def test_every_consumed_event_type_has_a_handler_and_a_producer():
    producers: dict[str, set[str]] = defaultdict(set)
    for spec in registry.PROCESSES:
        for model in spec.produces:
            assert CATALOG[model.event_type] is model
            producers[model.event_type].add(spec.name)
    for event_type in CLIENT_EVENTS:
        producers[event_type].add(CLIENT)
    assert set(producers) == set(CATALOG), "an event type nobody produces"
    for spec in registry.PROCESSES:
        consumed = spec.consumed_event_types(SETTINGS)
        if spec.is_service:
            router = spec.build(SETTINGS).router
            assert consumed == router.event_types
            assert all(router.get(t) is not None for t in consumed)
        for event_type in consumed:
            assert producers[event_type] - {spec.name}, f"{spec.name}: no one emits {event_type}"


def test_topics_follow_the_event_types():
    for spec in registry.PROCESSES:
        topics = spec.topics(SETTINGS)
        if spec.is_service:
            assert topics.consumes == spec.build(SETTINGS).router.topics(SETTINGS)
        assert topics.produces == sorted({topic_for(m, SETTINGS) for m in spec.produces})
    # The five services write their own domain's topic only (shipping's domain has two: the
    # order's shipments and the return's pickups); the coordinator writes the order topic and
    # the compensation commands; the projector writes no event, the API an operator's decisions.
    domains = {"shipping": {"shipment", "pickup"}}
    for spec in registry.SERVICES:
        if spec.name != "saga-coordinator":
            own = domains.get(spec.name, {spec.produces[0].event_type.split(".")[0]})
            assert {t.removeprefix("reg.") for t in spec.topics(SETTINGS).produces} == own
    assert registry.get("projector").consumed_event_types(SETTINGS) == sorted(CATALOG)
    assert len(registry.get("projector").consumes) == len(CATALOG)
    assert registry.get("api").topics(SETTINGS).consumes == []
    assert registry.get("api").topics(SETTINGS).produces == ["reg.order"]


def test_a_spec_is_a_service_or_has_a_runner():
    with pytest.raises(ValueError, match="a builder or a runner"):
        ProcessSpec(name="x")
    with pytest.raises(ValueError, match="a builder or a runner"):
        ProcessSpec(name="x", builder="m:f", runner="m:g")
    with pytest.raises(ValueError, match="not 'module:function'"):
        ProcessSpec(name="x", builder="m.f")
    with pytest.raises(ValueError, match="only services are replayed"):
        ProcessSpec(name="x", runner="m:f", replay_builder="m:g")


def test_handlers_do_not_import_their_service_and_the_registry_imports_no_process():
    """No handlers↔service cycle; the CLI's registry stays cheap to import."""
    code = """
import sys
import choreo.registry
heavy = [m for m in sys.modules if m.endswith(('.service', '.handlers')) or m == 'fastapi']
assert not heavy, heavy
for package in ('inventory', 'payment', 'shipping', 'crm', 'email'):
    __import__(f'services.{package}.handlers')
    assert f'services.{package}.service' not in sys.modules, package
import saga_coordinator.handlers, saga_coordinator.timers
assert 'saga_coordinator.service' not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True)
