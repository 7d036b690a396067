"""Fixtures shared by every test suite.

Integration and e2e tests run on the real stack: the session fixture ``stack`` brings it up
(idempotent; `make test` has usually started it already) and fails loudly, never skips, when it
cannot. Each test gets its own topic prefix, hence its own topics and consumer groups.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from choreo.stack.base import StackSettings, port_open
from choreo.stack.kafka import Kafka
from contracts.catalog import CATALOG
from events.codec import Codec
from events.producer import EventProducer
from events.schemas import SchemaRegistry
from events.security import kafka_options
from events.settings import Settings, get_settings
from events.topics import provision_topics
from projections.tokens import ApiSettings, new_token

_SPANS = InMemorySpanExporter()

# Fuzzing (Hypothesis, Schemathesis) at a bounded size in `make test`; a long run with
# `pytest --hypothesis-profile=fuzz tests/unit/events/test_codec_fuzz.py`. The deadline is how
# a hang shows: generous, because two cores are shared by the whole suite.
hypothesis_settings.register_profile(
    "choreo",
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
hypothesis_settings.register_profile(
    "fuzz", parent=hypothesis_settings.get_profile("choreo"), max_examples=20_000
)
hypothesis_settings.load_profile("choreo")


@pytest.fixture(scope="session", autouse=True)
def _tracer_provider() -> Iterator[None]:
    """A real SDK tracer (spans kept in memory) so trace context is produced and checked."""
    # The test process plays the CLI: its spans are the roots of the orders' traces.
    provider = TracerProvider(resource=Resource.create({"service.name": "cli"}))
    provider.add_span_processor(SimpleSpanProcessor(_SPANS))
    trace.set_tracer_provider(provider)
    yield
    provider.shutdown()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    _SPANS.clear()
    return _SPANS


@pytest.fixture(scope="session")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load(get_settings().schemas_dir)


@pytest.fixture(scope="session")
def codec(registry: SchemaRegistry) -> Codec:
    return Codec(registry, CATALOG)


@pytest.fixture(scope="session")
def stack() -> Iterator[None]:
    """The real Kafka, PostgreSQL and Jaeger, started by the project's own stack code.

    The topics the session made are deleted at its end: every test has topics of its own, and
    a long-lived local broker (`make run`'s) would otherwise keep thousands of partitions open
    run after run, until it runs out of file descriptors.
    """
    from choreo.stack import Stack

    Stack().up(lambda line: print(f"[stack] {line}"))
    get_settings.cache_clear()  # read anew: the stack recorded where its PostgreSQL listens
    settings = get_settings()
    before = asyncio.run(_topics(settings))
    yield
    asyncio.run(_delete_topics(settings, before))


async def _topics(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _delete_topics(settings: Settings, keep: set[str]) -> None:
    """Delete the topics made since ``keep`` was listed, but never the deployment's own."""
    doomed = sorted(
        t
        for t in await _topics(settings) - keep
        if not t.startswith((settings.topic_prefix, "_"))  # `make run`'s, Kafka's internal
    )
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        for at in range(0, len(doomed), 500):
            await admin.delete_topics(doomed[at : at + 500])
    finally:
        await admin.close()


def _free_port_pair() -> int:
    """A free loopback port whose next one is free too, below Linux's ephemeral range (where a
    client's socket could take it before the broker binds it)."""
    for _ in range(50):
        base = random.randrange(20_000, 32_000, 2)
        if not port_open(base) and not port_open(base + 1):
            return base
    raise AssertionError("no two consecutive free ports")


@pytest.fixture(scope="session")
def secure_kafka(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A secured Kafka of the session's own (``choreo stack up --secure``'s broker: SASL_SSL,
    SCRAM users, ACLs), beside the shared stack, on ports and in a state folder of its own;
    started by the first test that needs it, stopped at the end. Yields its administrator's
    settings (the shared stack's PostgreSQL, Jaeger and everything else)."""
    state = tmp_path_factory.mktemp("secure-kafka")
    base = _free_port_pair()
    settings = get_settings().model_copy(update={"state_dir": state, "kafka_secure": True})
    kafka = Kafka(
        settings,
        StackSettings(
            kafka_port=base,
            kafka_controller_port=base + 1,
            kafka_heap="384m",
            # As the cluster test: the client compiler and a serial collector start quicker.
            kafka_jvm_options="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
            ready_timeout_s=240,
        ),
    )
    try:
        kafka.install(lambda line: print(f"[secure kafka] {line}"))
        kafka.start(lambda line: print(f"[secure kafka] {line}"))
        yield kafka.client_settings
    finally:
        kafka.stop(lambda line: print(f"[secure kafka] {line}"))


@pytest.fixture
def settings(stack: None) -> Settings:
    """Settings whose topic prefix is unique to this test."""
    return get_settings().model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})


@pytest.fixture
async def topics(settings: Settings) -> list[str]:
    """This test's topics, created on the real broker."""
    return await provision_topics(settings)


@pytest.fixture
async def producer(
    settings: Settings, codec: Codec, topics: list[str]
) -> AsyncIterator[EventProducer]:
    async with EventProducer(settings, codec, client_id="test") as p:
        yield p


@dataclass(frozen=True)
class ApiTokens:
    """An operator's and a viewer's token, and API settings that accept both (no file)."""

    operator: str
    viewer: str
    api: ApiSettings


@pytest.fixture(scope="session")
def api_tokens(tmp_path_factory: pytest.TempPathFactory) -> ApiTokens:
    """Tokens for the HTTP API and the console (hashed once per session: Argon2 is slow)."""
    operator, operator_record = new_token("test-operator", "operator")
    viewer, viewer_record = new_token("test-viewer", "viewer")
    api = ApiSettings(
        tokens=[operator_record, viewer_record],
        tokens_file=tmp_path_factory.mktemp("api") / "api-tokens.json",
    )
    return ApiTokens(operator, viewer, api)
