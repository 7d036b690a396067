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


@pytest.mark.parametrize(
    ("ports", "postgres", "otlp", "jaeger"),
    [
        ({}, 15432, 4317, 16686),  # the local stack's defaults
        (
            {
                "CHOREO_POSTGRES_PORT": "25432",
                "CHOREO_JAEGER_OTLP_GRPC_PORT": "24317",
                "CHOREO_JAEGER_QUERY_PORT": "26686",
            },
            25432,
            24317,
            26686,
        ),
    ],
)
def test_the_defaults_follow_the_stacks_ports(
    monkeypatch: pytest.MonkeyPatch, ports: dict[str, str], postgres: int, otlp: int, jaeger: int
):
    for name, value in ports.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_url == f"postgresql://choreo:choreo@127.0.0.1:{postgres}/choreo"
    assert settings.otel_exporter_otlp_endpoint == f"http://127.0.0.1:{otlp}"
    assert settings.jaeger_query_url == f"http://127.0.0.1:{jaeger}"


def test_an_explicit_address_wins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHOREO_POSTGRES_PORT", "25432")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@db.internal:5432/orders")
    assert Settings().database_url == "postgresql://app:pw@db.internal:5432/orders"
