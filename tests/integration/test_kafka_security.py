"""The secured Kafka (`choreo stack up --secure`): a process's credentials reach what its ACLs
allow and nothing else; without the right password or TLS nothing gets in.

Runs on the session's own secured broker (``secure_kafka``), never the shared stack's.
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from pydantic import SecretStr

from choreo import registry
from choreo.kafka_access import process_kafka_env, provision_kafka_access
from events.security import kafka_options
from events.settings import Settings
from events.topics import provision_topics

pytestmark = pytest.mark.integration


@pytest.fixture
async def admin(secure_kafka: Settings) -> Settings:
    """The administrator's settings with a topic prefix of this test's, topics and the payment
    service's user made."""
    settings = secure_kafka.model_copy(update={"topic_prefix": f"s{uuid.uuid4().hex[:10]}."})
    await provision_topics(settings)
    await provision_kafka_access(settings, [registry.get("payment")])
    return settings


def _as(admin: Settings, process: str, password: str | None = None) -> Settings:
    """``admin``'s settings with ``process``'s credentials, as `choreo run` hands them."""
    env = process_kafka_env(admin, process)
    return admin.model_copy(
        update={
            "kafka_sasl_username": env["KAFKA_SASL_USERNAME"],
            "kafka_sasl_password": SecretStr(password or env["KAFKA_SASL_PASSWORD"]),
        }
    )


async def test_payment_produces_to_its_topic_but_not_to_inventory(admin: Settings):
    payment = _as(admin, "payment")
    async with AIOKafkaProducer(
        **kafka_options(payment), enable_idempotence=True, acks="all"
    ) as producer:
        sent = await producer.send_and_wait(f"{admin.topic_prefix}payment", b"charged", key=b"o")
        assert sent.offset == 0
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(f"{admin.topic_prefix}inventory", b"forged", key=b"o")


async def test_payment_cannot_read_a_topic_it_does_not_consume(admin: Settings):
    payment = _as(admin, "payment")
    consumer = AIOKafkaConsumer(
        f"{admin.topic_prefix}shipment",
        **kafka_options(payment),
        group_id=f"{admin.topic_prefix}payment",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()


async def test_a_wrong_password_or_plaintext_gets_nothing(admin: Settings):
    wrong = _as(admin, "payment", password="not-the-password")
    producer = AIOKafkaProducer(**kafka_options(wrong), request_timeout_ms=5000)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()
    plain = admin.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    producer = AIOKafkaProducer(**kafka_options(plain), request_timeout_ms=5000)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()
