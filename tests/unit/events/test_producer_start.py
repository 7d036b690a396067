"""A producer that cannot reach Kafka fails its start cleanly: the client is closed (no
"Unclosed AIOKafkaProducer" at exit) and a later start tries again with a new one."""

from __future__ import annotations

import socket

import pytest
from aiokafka.errors import KafkaConnectionError

from contracts.catalog import CATALOG
from events.codec import Codec
from events.producer import EventProducer
from events.schemas import SchemaRegistry
from events.settings import Settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_failed_start_closes_its_client_and_the_next_start_tries_again():
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{closed_port()}", kafka_secure=False)
    producer = EventProducer(settings, Codec(SchemaRegistry.load(settings.schemas_dir), CATALOG))
    first = producer._producer
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    assert first._closed
    with pytest.raises(KafkaConnectionError):  # tried again, not refused as closed
        await producer.start()
    second = producer._producer
    assert second is not first
    assert second._closed
    await producer.stop()
