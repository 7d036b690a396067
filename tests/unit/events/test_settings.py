"""Settings' defaults follow the local stack's ports, so a second stack needs only its ports."""

from __future__ import annotations

import pytest

from events.settings import Settings

OUTSIDE = (
    "DATABASE_URL",
    "CHOREO_DATABASE_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "CHOREO_JAEGER_QUERY_URL",
    "CHOREO_POSTGRES_PORT",
    "CHOREO_JAEGER_OTLP_GRPC_PORT",
    "CHOREO_JAEGER_QUERY_PORT",
)


@pytest.fixture(autouse=True)
def _no_outside_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OUTSIDE:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_local_stack():
    settings = Settings()
    assert settings.database_url == "postgresql://choreo:choreo@127.0.0.1:15432/choreo"
    assert settings.otel_exporter_otlp_endpoint == "http://127.0.0.1:4317"
    assert settings.jaeger_query_url == "http://127.0.0.1:16686"


def test_a_stack_on_other_ports_moves_the_defaults(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHOREO_POSTGRES_PORT", "25432")
    monkeypatch.setenv("CHOREO_JAEGER_OTLP_GRPC_PORT", "24317")
    monkeypatch.setenv("CHOREO_JAEGER_QUERY_PORT", "26686")
    settings = Settings()
    assert settings.database_url == "postgresql://choreo:choreo@127.0.0.1:25432/choreo"
    assert settings.otel_exporter_otlp_endpoint == "http://127.0.0.1:24317"
    assert settings.jaeger_query_url == "http://127.0.0.1:26686"


def test_an_explicit_address_wins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHOREO_POSTGRES_PORT", "25432")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@db.internal:5432/orders")
    assert Settings().database_url == "postgresql://app:pw@db.internal:5432/orders"
