"""`choreo stack up --brokers 3`: a KRaft cluster of three that loses no acknowledged write
when a broker dies, even the controller quorum's leader.

The test starts its own cluster (its own state folder and ports, small heaps) beside the shared
stack, which it never touches, and stops it at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from choreo.stack.base import StackSettings, pid_alive, port_open
from choreo.stack.kafka import Kafka, KafkaNode
from choreo.stack.quorum import Quorum, describe_quorum
from events.codec import Codec
from events.errors import StackError
from events.producer import EventProducer, OutgoingRecord
from events.security import kafka_options
from events.settings import Settings, get_settings, local_kafka
from events.topics import brokers_listed, provision_topics

pytestmark = pytest.mark.integration

ORDERS = 30
"""Keys written to; each gets one record before the kill and one after."""


def _free_port_base() -> int:
    """The first of six consecutive free loopback ports (three nodes, client + controller),
    below Linux's ephemeral range (32768 up), where a client's socket could take one before
    the node binds it."""
    for _ in range(50):
        base = random.randrange(20_000, 32_000, 2)
        if not any(port_open(base + i) for i in range(6)):
            return base
    raise AssertionError("no six consecutive free ports")


def _log(line: str) -> None:
    print(f"[cluster] {line}")


@pytest.fixture
async def cluster(stack: None, tmp_path: Path) -> AsyncIterator[Kafka]:
    """Three KRaft nodes under ``tmp_path``, on ports of their own; stopped afterwards."""
    base = _free_port_base()
    settings = get_settings().model_copy(update={"state_dir": tmp_path})
    stack_settings = StackSettings(
        kafka_port=base,
        kafka_controller_port=base + 1,
        kafka_heap="256m",
        # The client compiler alone and a serial collector: less JIT and GC work while three
        # JVMs start on two cores (setup 25 s instead of 34 s, one run each, machine busy).
        kafka_jvm_options="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        ready_timeout_s=240,
    )
    kafka = Kafka(settings, stack_settings, brokers=3)
    try:
        # The stack's code is synchronous and runs its own event loops: off this one.
        await asyncio.to_thread(kafka.install, _log)
        await asyncio.to_thread(kafka.start, _log)
        yield kafka
    finally:
        await asyncio.to_thread(kafka.stop, _log)
    assert not any(node.daemon.pid() for node in kafka.nodes)


def _kill(node: KafkaNode) -> None:
    pid = node.daemon.pid()
    assert pid is not None, f"node {node.node_id} is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"node {node.node_id} survived SIGKILL"
        time.sleep(0.1)


async def _replication(settings: Settings, topic: str) -> tuple[set[int], str]:
    """The replica counts of the topic's partitions and its min.insync.replicas (asked until
    the broker answering knows the new topic: brokers learn it from the metadata log)."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    deadline = time.monotonic() + 30
    try:
        while True:
            [described] = await admin.describe_topics([topic])
            [configs] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            [resource] = configs.to_object()["resources"]
            if not (described["error_code"] or resource["error_code"]):
                break
            assert time.monotonic() < deadline, (described, resource)
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    replicas = {len(p["replicas"]) for p in described["partitions"]}
    min_insync = next(
        e["config_value"]
        for e in resource["config_entries"]
        if e["config_names"] == "min.insync.replicas"
    )
    return replicas, min_insync


async def _produce(producer: EventProducer, topic: str, round_: str) -> list[bytes]:
    values = [f"{round_}:{n}".encode() for n in range(ORDERS)]
    await producer.send_records(
        [
            OutgoingRecord(topic=topic, key=f"ord-{n}".encode(), value=value, headers=())
            for n, value in enumerate(values)
        ]
    )
    return values


async def _consume(settings: Settings, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` records of ``topic`` through a consumer group (its offsets committed)."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_options(settings),
        group_id=f"{topic}.reader",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 90
    try:
        while len(got) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend((r.key, r.value) for r in records)
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def _new_leader(bootstrap: str, dead: KafkaNode, timeout: float = 60.0) -> Quorum:
    """The quorum once it has elected a leader other than ``dead`` (asked until then: while
    the election runs the quorum answers with an error, or still names the dead leader)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            quorum = await describe_quorum(bootstrap)
        except StackError:
            quorum = None
        if quorum is not None and quorum.leader_id not in (-1, dead.node_id):
            return quorum
        assert time.monotonic() < deadline, f"no new controller leader: {quorum}"
        await asyncio.sleep(0.5)


async def _all_brokers_in(bootstrap: str, timeout: float = 60) -> None:
    """Until every broker's own metadata lists all three (each serves its own copy)."""
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            listed = await brokers_listed(admin)
        except StackError:
            listed = []
        finally:
            await admin.close()
        if listed == [3, 3, 3]:
            return
        assert time.monotonic() < deadline, f"brokers listed by each broker: {listed}"
        await asyncio.sleep(0.5)


async def test_killing_the_controller_leader_loses_no_acknowledged_write(
    cluster: Kafka, codec: Codec
):
    settings = get_settings().model_copy(
        update={
            "kafka_bootstrap_servers": cluster.address,
            "topic_prefix": f"c{uuid.uuid4().hex[:8]}.",
        }
    )
    assert len(cluster.address.split(",")) == 3
    assert local_kafka(cluster.settings.state_dir) == cluster.address  # what clients read
    topic = f"{settings.topic_prefix}order"
    # On two loaded cores a node can be fenced for a moment (its heartbeats late); the topic's
    # replica count is the live brokers', so create it when all three are in.
    await _all_brokers_in(cluster.address)
    assert await provision_topics(settings, [topic]) == [topic]
    assert await _replication(settings, topic) == ({3}, "2")

    quorum = await describe_quorum(cluster.address)
    assert set(quorum.voters) == {1, 2, 3}
    rows = await asyncio.to_thread(cluster.status)
    assert [row.running for row in rows] == [True, True, True]
    assert [row.name for row in rows if "controller leader" in row.detail] == [
        cluster.nodes[quorum.leader_id - 1].name
    ]

    async with EventProducer(settings, codec, client_id="cluster-test") as producer:
        written = await _produce(producer, topic, "before")
        leader = cluster.nodes[quorum.leader_id - 1]
        await asyncio.to_thread(_kill, leader)
        # acks=all with min.insync.replicas=2: every write below is on both survivors.
        written += await _produce(producer, topic, "after")

    survivors = ",".join(node.address for node in cluster.nodes if node is not leader)
    new_quorum = await _new_leader(survivors, leader)
    assert new_quorum.leader_epoch > quorum.leader_epoch

    got = await _consume(settings, topic, len(written))
    assert sorted(value for _, value in got) == sorted(written)  # nothing lost, nothing twice
    for n in range(ORDERS):  # each key's records in the order they were written
        key = f"ord-{n}".encode()
        assert [value for k, value in got if k == key] == [
            f"before:{n}".encode(),
            f"after:{n}".encode(),
        ]

    rows = await asyncio.to_thread(cluster.status)
    assert [row.running for row in rows] == [node is not leader for node in cluster.nodes]
