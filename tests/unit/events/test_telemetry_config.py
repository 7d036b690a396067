"""What :func:`events.tracing.configure_telemetry` exports: spans and metrics each by its own
switch, so a platform that leaves tracing off for its cost still reports its metrics."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.grpc import metric_exporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
from opentelemetry.sdk.trace import TracerProvider

from events import tracing
from events.settings import Settings


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The providers configure_telemetry installs, caught instead of made global (and shut
    down after); metrics go to a buffer, not over OTLP."""
    caught: dict[str, Any] = {}
    monkeypatch.setattr(tracing, "_configured", set())
    monkeypatch.setattr(trace, "set_tracer_provider", lambda p: caught.setdefault("spans", p))
    monkeypatch.setattr(metrics, "set_meter_provider", lambda p: caught.setdefault("metrics", p))
    monkeypatch.setattr(
        metric_exporter, "OTLPMetricExporter", lambda **_: ConsoleMetricExporter(out=io.StringIO())
    )
    yield caught
    for provider in caught.values():
        provider.shutdown()


@pytest.mark.parametrize(
    ("tracing_on", "metrics_on"), [(True, True), (False, True), (True, False), (False, False)]
)
def test_spans_and_metrics_follow_their_own_switch(
    installed: dict[str, Any], tracing_on: bool, metrics_on: bool
) -> None:
    settings = Settings(tracing_enabled=tracing_on, metrics_enabled=metrics_on)
    tracing.configure_telemetry("inventory", settings)
    assert isinstance(installed.get("spans"), TracerProvider) is tracing_on
    assert isinstance(installed.get("metrics"), MeterProvider) is metrics_on


def test_both_name_the_service(installed: dict[str, Any]) -> None:
    tracing.configure_telemetry("payment", Settings(tracing_enabled=True, metrics_enabled=True))
    spans: TracerProvider = installed["spans"]
    meters: MeterProvider = installed["metrics"]
    assert spans.resource.attributes["service.name"] == "payment"
    assert meters._sdk_config.resource.attributes["service.name"] == "payment"


def test_a_second_call_changes_nothing(installed: dict[str, Any]) -> None:
    tracing.configure_telemetry("shipping", Settings(tracing_enabled=False, metrics_enabled=True))
    first = installed["metrics"]
    installed.clear()
    tracing.configure_telemetry("shipping", Settings(tracing_enabled=True, metrics_enabled=True))
    assert installed == {}
    installed["metrics"] = first  # still shut down by the fixture


def test_the_settings_default_to_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHOREO_TRACING_ENABLED", raising=False)
    monkeypatch.delenv("CHOREO_METRICS_ENABLED", raising=False)
    assert Settings().tracing_enabled
    assert Settings().metrics_enabled
    monkeypatch.setenv("CHOREO_TRACING_ENABLED", "false")
    assert Settings().metrics_enabled  # tracing off leaves metrics on
