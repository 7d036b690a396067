"""Each process's Kafka user may read what it consumes and write what it produces, no more."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from choreo import registry
from choreo.kafka_access import kafka_user, process_acls, process_kafka_env
from choreo.kafka_admin import DESCRIBE, GROUP, PREFIXED, READ, TOPIC, WRITE, AclBinding
from choreo.stack.tls import ensure_tls
from choreo.supervisor import child_env
from events.security import kafka_user_password
from events.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, topic_prefix="p.", kafka_bootstrap_servers="h:1")


def _grants(settings: Settings, process: str, resource: int, operation: int) -> set[str]:
    acls = process_acls(settings, registry.get(process))
    return {a.name for a in acls if (a.resource_type, a.operation) == (resource, operation)}


def test_payment_reads_what_it_consumes_and_writes_its_topic_and_the_dlq(tmp_path: Path):
    settings = _settings(tmp_path)
    assert _grants(settings, "payment", TOPIC, WRITE) == {"p.payment", "p.dlq"}
    reads = _grants(settings, "payment", TOPIC, READ)
    assert reads == {"p.order", "p.payment", "p.inventory", "p.return"}  # what it handles
    assert _grants(settings, "payment", GROUP, READ) == {"p.payment"}
    principal = f"User:{kafka_user(settings, 'payment')}"
    assert AclBinding(principal, TOPIC, "p.", DESCRIBE, PREFIXED) in process_acls(
        settings, registry.get("payment")
    )


def test_no_process_but_the_api_writes_another_domain_or_reads_the_dlq(tmp_path: Path):
    settings = _settings(tmp_path)
    for spec in registry.PROCESSES:
        produced = set(spec.topics(settings).produces)
        writes = _grants(settings, spec.name, TOPIC, WRITE)
        if spec.name == "api":  # redrives publish to the letters' source topics
            assert writes > produced | {"p.dlq"}
            assert "p.dlq" in _grants(settings, "api", TOPIC, READ)
        else:
            assert writes == produced | {"p.dlq"}, spec.name
            assert "p.dlq" not in _grants(settings, spec.name, TOPIC, READ), spec.name
        assert not any(
            a.resource_type == GROUP and a.operation == WRITE for a in process_acls(settings, spec)
        )


def test_a_child_gets_only_its_own_user_and_the_ca(tmp_path: Path):
    settings = _settings(tmp_path).model_copy(update={"kafka_secure": True})
    env = process_kafka_env(settings, "payment")
    assert env["KAFKA_SASL_USERNAME"] == "p.payment"
    assert env["KAFKA_SASL_PASSWORD"] == kafka_user_password(settings, "p.payment")
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SSL_CAFILE"].endswith("kafka/tls/ca.pem")
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "h:1"


def test_the_broker_certificate_is_signed_by_the_local_ca_for_loopback(tmp_path: Path):
    files = ensure_tls(tmp_path)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    broker = x509.load_pem_x509_certificates(files.broker.read_bytes())[0]
    broker.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert files.broker.stat().st_mode & 0o777 == 0o600
    assert ensure_tls(tmp_path).ca.read_bytes() == files.ca.read_bytes()  # kept, not remade


def test_choreo_run_gives_each_child_its_own_user_and_not_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CHOREO_KAFKA_USER_SECRET", "the-key")
    settings = _settings(tmp_path).model_copy(update={"kafka_secure": True})
    env = child_env(settings, "email")
    assert env["KAFKA_SASL_USERNAME"] == "p.email"
    assert env["KAFKA_SASL_PASSWORD"] == kafka_user_password(settings, "p.email")
    assert "CHOREO_KAFKA_USER_SECRET" not in env
    assert "KAFKA_SASL_USERNAME" not in child_env(_settings(tmp_path), "email")  # plain stack


def test_the_coordinator_may_describe_the_deployments_groups(tmp_path: Path):
    """Its deadlines judge a participant by how far its consumer group got."""
    settings = _settings(tmp_path)
    assert "p." in _grants(settings, "saga-coordinator", GROUP, DESCRIBE)
    assert "p." not in _grants(settings, "payment", GROUP, DESCRIBE)
