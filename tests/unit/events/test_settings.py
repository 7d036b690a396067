"""Settings' defaults follow the local stack's ports, so a second stack needs only its ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.settings import POSTGRES_SOCKET_FILE, Settings

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
def _no_outside_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in OUTSIDE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHOREO_STATE_DIR", str(tmp_path))  # no stack recorded anything here


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


def record_socket(state_dir: Path, folder: str) -> None:
    (state_dir / POSTGRES_SOCKET_FILE).parent.mkdir(parents=True, exist_ok=True)
    (state_dir / POSTGRES_SOCKET_FILE).write_text(folder + "\n")


def test_the_local_stack_is_reached_over_the_socket_it_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    record_socket(tmp_path, "/srv/choreo state/postgres")
    monkeypatch.setenv("CHOREO_POSTGRES_PORT", "25432")
    assert Settings().database_url == (
        "postgresql://choreo:choreo@/choreo?host=/srv/choreo%20state/postgres&port=25432"
    )


def test_a_socket_path_too_long_for_unix_sockets_falls_back_to_tcp(tmp_path: Path):
    record_socket(tmp_path, "/" + "d" * 100)
    assert Settings().database_url == "postgresql://choreo:choreo@127.0.0.1:15432/choreo"


def test_an_explicit_address_wins_over_the_recorded_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    record_socket(tmp_path, "/srv/choreo/postgres")
    monkeypatch.setenv("CHOREO_DATABASE_URL", "postgresql://app:pw@db.internal:5432/orders")
    assert Settings().database_url == "postgresql://app:pw@db.internal:5432/orders"


def test_a_relative_state_dir_is_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    # `CHOREO_STATE_DIR=.state choreo stack up` recorded the socket as ".state/postgres",
    # which every later command took for a host name (a UnicodeError from the resolver).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHOREO_STATE_DIR", "state")
    record_socket(tmp_path / "state", str(tmp_path / "state" / "postgres"))
    settings = Settings()
    assert settings.state_dir == tmp_path / "state"
    assert f"host={tmp_path}/state/postgres&" in settings.database_url


def test_a_relative_socket_folder_recorded_before_is_not_taken_for_a_host(tmp_path: Path):
    record_socket(tmp_path, ".state/postgres")
    assert Settings().database_url == "postgresql://choreo:choreo@127.0.0.1:15432/choreo"
