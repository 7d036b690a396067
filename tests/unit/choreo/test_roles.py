"""Each process's PostgreSQL DSN: its own role and password on the administrator's server."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr

from choreo.roles import as_process, process_dsn, process_env, role_name, role_password
from events.settings import Settings


def _settings(**update: object) -> Settings:
    base = Settings(database_url="postgresql://admin:s3cret@db.example:6432/choreo?sslmode=require")
    return base.model_copy(update={"database_role_secret": SecretStr("k"), **update})


def test_a_process_dsn_swaps_only_the_user_and_password():
    settings = _settings()
    dsn = urlsplit(process_dsn(settings, "saga-coordinator"))
    assert (dsn.username, dsn.password) == (
        "choreo_saga_coordinator",
        role_password(settings, "saga-coordinator"),
    )
    assert (dsn.hostname, dsn.port, dsn.path, dsn.query) == (
        "db.example", 6432, "/choreo", "sslmode=require",
    )  # fmt: skip
    assert "s3cret" not in process_dsn(settings, "payment")
    assert process_env(settings, "payment") == {"DATABASE_URL": process_dsn(settings, "payment")}


def test_passwords_differ_per_role_and_key_and_roles_per_prefix():
    settings = _settings()
    assert role_password(settings, "payment") != role_password(settings, "inventory")
    other_key = _settings(database_role_secret=SecretStr("another"))
    assert role_password(settings, "payment") != role_password(other_key, "payment")
    assert role_name(_settings(topic_prefix="t1."), "payment") == "t1_payment"


def test_without_a_secret_the_key_is_generated_once_in_the_state_dir(tmp_path):
    settings = _settings(database_role_secret=None, state_dir=tmp_path)
    first = role_password(settings, "payment")
    key = tmp_path / "postgres-roles.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert role_password(settings, "payment") == first
    assert len(first) == 64


def test_processes_run_as_their_own_roles_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("CHOREO_DATABASE_ROLES", raising=False)
    assert Settings().database_roles
    monkeypatch.setenv("CHOREO_DATABASE_ROLES", "false")
    assert not Settings().database_roles


def test_a_tool_acts_as_the_process_only_when_processes_run_as_roles():
    off = _settings(database_roles=False)
    assert as_process(off, "projector") is off
    on = _settings(database_roles=True)
    assert as_process(on, "projector").database_url == process_dsn(on, "projector")
