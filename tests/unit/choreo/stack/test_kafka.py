"""The local Kafka's layout: node ports and folders, the formatted size, what clients read."""

from __future__ import annotations

import string
import uuid
from pathlib import Path

import pytest

from choreo.stack import kafka
from choreo.stack.base import INFRA, StackSettings
from choreo.stack.kafka import (
    PLAIN_LISTENERS,
    SECURE_LISTENERS,
    Kafka,
    cluster_nodes,
    formatted_secure,
    formatted_size,
)
from events.errors import StackError
from events.settings import BOOTSTRAP_FILE, LOCAL_KAFKA, Settings, local_kafka
from events.topics import min_insync


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    return Settings(state_dir=tmp_path)


def test_nodes_take_consecutive_port_pairs_and_a_folder_each(settings: Settings):
    nodes = cluster_nodes(settings, StackSettings(kafka_port=30000, kafka_controller_port=30001), 3)
    assert [(n.name, n.port, n.controller_port) for n in nodes] == [
        ("kafka", 30000, 30001),
        ("kafka-2", 30002, 30003),
        ("kafka-3", 30004, 30005),
    ]
    assert [n.home.name for n in nodes] == ["kafka", "kafka-2", "kafka-3"]
    assert Kafka(settings, StackSettings(), 3).address == (
        "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    )


def test_one_node_by_default_with_the_single_node_layout(settings: Settings):
    kafka = Kafka(settings, StackSettings())
    assert [(n.name, n.home) for n in kafka.nodes] == [("kafka", settings.state_dir / "kafka")]
    assert kafka.address == "127.0.0.1:19092"


def _format(settings: Settings, size: int, listeners: str = PLAIN_LISTENERS) -> None:
    """What `up` leaves on disk for a cluster of ``size``: node 1's config and storage."""
    kafka = Kafka(settings, StackSettings(), size)
    home = kafka.nodes[0].home
    (home / "data").mkdir(parents=True)
    (home / "data" / "meta.properties").write_text("node.id=1\n")
    template = string.Template((INFRA / "kafka" / "server.properties.template").read_text())
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in kafka.nodes)
    (home / "server.properties").write_text(
        template.substitute(
            node_id=1,
            voters=voters,
            port=1,
            controller_port=2,
            data_dir=home / "data",
            replication=min(3, size),
            min_insync=1,
            listeners=listeners,
        )
    )


def test_the_formatted_cluster_decides_the_size_of_status_and_down(settings: Settings):
    assert formatted_size(settings) is None
    _format(settings, 3)
    assert formatted_size(settings) == 3
    assert len(Kafka(settings, StackSettings()).nodes) == 3  # no flag needed


def test_asking_another_size_than_the_formatted_one_is_refused(settings: Settings):
    _format(settings, 1)
    with pytest.raises(StackError, match="cluster of 1 node"):
        Kafka(settings, StackSettings(), brokers=3).start(lambda line: None)


def test_the_formatted_cluster_decides_whether_it_is_secured(settings: Settings):
    assert formatted_secure(settings) is None
    _format(settings, 1, SECURE_LISTENERS)
    assert formatted_secure(settings) is True
    assert Kafka(settings, StackSettings()).secure  # no flag needed
    plain = settings.model_copy(update={"kafka_secure": False})
    with pytest.raises(StackError, match="is secured"):
        Kafka(plain, StackSettings()).start(lambda line: None)


def test_a_plaintext_cluster_is_not_secured_by_asking(settings: Settings):
    _format(settings, 1)
    assert formatted_secure(settings) is False
    with pytest.raises(StackError, match="is plaintext"):
        Kafka(settings.model_copy(update={"kafka_secure": True}), StackSettings()).start(
            lambda line: None
        )


def test_clients_bootstrap_from_every_node_up_recorded(tmp_path: Path):
    assert local_kafka(tmp_path) == LOCAL_KAFKA
    (tmp_path / BOOTSTRAP_FILE).parent.mkdir(parents=True)
    (tmp_path / BOOTSTRAP_FILE).write_text("127.0.0.1:1,127.0.0.1:3\n")
    assert local_kafka(tmp_path) == "127.0.0.1:1,127.0.0.1:3"


def test_min_insync_is_two_from_three_replicas_unless_set(settings: Settings):
    assert [min_insync(settings, rf) for rf in (1, 2, 3, 5)] == [1, 1, 2, 2]
    assert min_insync(settings.model_copy(update={"topic_min_insync_replicas": 3}), 3) == 3


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch):
    # 0xf8.. encodes as "-" first: the storage tool would take such an id for an option.
    ids = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(int=7)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(ids))
    cluster_id = kafka.new_cluster_id()
    assert cluster_id == "AAAAAAAAAAAAAAAAAAAABw"
    assert len(cluster_id) == 22
