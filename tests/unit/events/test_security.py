"""How every Kafka client connects: the standard settings, and a secured local stack's defaults."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from choreo.stack.tls import ensure_tls
from events.errors import ChoreoError
from events.security import ADMIN_USER, kafka_options, kafka_user_password
from events.settings import Settings


@pytest.fixture
def plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return Settings(state_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:1")


def test_a_plain_stack_connects_in_plaintext(plain: Settings):
    assert not plain.kafka_secure
    assert kafka_options(plain) == {
        "bootstrap_servers": "127.0.0.1:1",
        "security_protocol": "PLAINTEXT",
    }


def test_a_secured_local_stack_is_detected_and_clients_default_to_its_admin(plain: Settings):
    ensure_tls(plain.state_dir)
    secured = Settings(state_dir=plain.state_dir, kafka_bootstrap_servers="127.0.0.1:1")
    assert secured.kafka_secure
    options = kafka_options(secured)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == ADMIN_USER
    assert options["sasl_plain_password"] == kafka_user_password(secured, ADMIN_USER)
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_the_standard_settings_name_an_existing_secured_cluster(
    plain: Settings, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "orders-app")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    options = kafka_options(Settings(state_dir=plain.state_dir))
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == (
        "SCRAM-SHA-256",
        "orders-app",
    )
    assert options["sasl_plain_password"] == "s3cret"


def test_sasl_without_credentials_is_refused(plain: Settings):
    with pytest.raises(ChoreoError, match="KAFKA_SASL_USERNAME"):
        kafka_options(plain.model_copy(update={"kafka_security_protocol": "SASL_PLAINTEXT"}))
    named = plain.model_copy(
        update={"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "x"}
    )
    with pytest.raises(ChoreoError, match="KAFKA_SASL_PASSWORD"):
        kafka_options(named)


def test_passwords_derive_from_one_key_per_user(plain: Settings):
    keyed = plain.model_copy(update={"kafka_user_secret": SecretStr("k")})
    assert kafka_user_password(keyed, "a") != kafka_user_password(keyed, "b")
    assert kafka_user_password(keyed, "a") != kafka_user_password(plain, "a")
    assert kafka_user_password(plain, "a") == kafka_user_password(plain, "a")  # key kept
    assert (plain.state_dir / "kafka" / "tls" / "users.key").stat().st_mode & 0o777 == 0o600
