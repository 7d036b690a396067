"""Topic provisioning's replica count, against an in-memory admin client whose brokers
disagree about the cluster (as a KRaft broker catching up on the metadata log does)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from events import topics
from events.errors import StackError
from events.settings import get_settings


@dataclass
class FakeAdmin:
    """Brokers 1..n, each listing ``views[node_id]`` brokers in its metadata."""

    views: dict[int, int]
    asked: list[int] = field(default_factory=list)
    created: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        brokers = [SimpleNamespace(nodeId=n) for n in self.views]
        self._client = SimpleNamespace(cluster=SimpleNamespace(brokers=lambda: brokers))

    async def _send_request(self, request: Any, node_id: int) -> Any:
        self.asked.append(node_id)
        if self.views[node_id] == 0:  # a broker that died and is not fenced yet
            raise ConnectionRefusedError(f"broker {node_id} is gone")
        listed = [{"node_id": n} for n in range(1, self.views[node_id] + 1)]
        return SimpleNamespace(to_object=lambda: {"brokers": listed})

    async def describe_cluster(self) -> dict[str, Any]:  # one broker at random: the first
        return {"brokers": [{"node_id": n} for n in range(1, next(iter(self.views.values())) + 1)]}

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def list_topics(self) -> list[str]:
        return []

    async def create_topics(self, new_topics: list[Any]) -> Any:
        self.created.extend(new_topics)
        return SimpleNamespace(topic_errors=[(t.name, 0, None) for t in new_topics])


async def test_the_broker_count_is_the_most_any_broker_lists() -> None:
    admin = FakeAdmin({1: 2, 2: 3, 3: 3})
    assert await topics._broker_count(admin) == 3
    assert sorted(admin.asked) == [1, 2, 3]


async def test_a_broker_that_does_not_answer_is_left_out() -> None:
    assert await topics._broker_count(FakeAdmin({1: 0, 2: 3, 3: 3})) == 3
    with pytest.raises(StackError, match=r"no broker answered .*broker 1 is gone"):
        await topics._broker_count(FakeAdmin({1: 0}))


async def test_a_lagging_broker_does_not_cut_a_topics_replicas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = FakeAdmin({1: 2, 2: 3, 3: 3})
    monkeypatch.setattr(topics, "AIOKafkaAdminClient", lambda **_: admin)
    settings = get_settings().model_copy(
        update={"topic_replication_factor": 0, "topic_min_insync_replicas": 0}
    )
    assert await topics.provision_topics(settings, ["t.order"]) == ["t.order"]
    [created] = admin.created
    assert (created.replication_factor, created.topic_configs["min.insync.replicas"]) == (3, "2")


async def test_a_single_broker_gets_one_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = FakeAdmin({1: 1})
    monkeypatch.setattr(topics, "AIOKafkaAdminClient", lambda **_: admin)
    settings = get_settings().model_copy(
        update={"topic_replication_factor": 0, "topic_min_insync_replicas": 0}
    )
    await topics.provision_topics(settings, ["t.order"])
    assert [
        (t.replication_factor, t.topic_configs["min.insync.replicas"]) for t in admin.created
    ] == [(1, "1")]
