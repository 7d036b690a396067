"""Faults of the local stack: a Kafka node SIGKILLed and started again, PostgreSQL restarted.

They act on the stack of the state folder (``CHOREO_STATE_DIR``) through :mod:`choreo.stack`,
so a run restarts only a stack it could also `choreo stack down`; an external Kafka or
PostgreSQL (named in the environment) is refused. With three Kafka nodes, the ``node`` target
is a node that does not lead the controller quorum and ``leader`` the one that does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

from choreo.stack.base import StackSettings
from choreo.stack.kafka import Kafka, KafkaNode
from choreo.stack.postgres import Postgres
from choreo.stack.quorum import describe_quorum
from events.errors import ChoreoError
from events.security import kafka_options
from events.settings import Settings

Log = Callable[[str], None]


def local_kafka(settings: Settings) -> Kafka:
    """The local Kafka of ``settings``' state folder.

    Raises:
        ChoreoError: Kafka is external, or the state folder has no cluster.
    """
    kafka = Kafka(settings, StackSettings())
    if kafka.external or kafka.formatted is None:
        raise ChoreoError(
            f"no local Kafka in {settings.state_dir} (external or not started): a chaos run"
            " restarts only the stack of its own state folder"
        )
    return kafka


def broker_count(settings: Settings) -> int:
    """Nodes of the local Kafka cluster (1 when there is none: an external Kafka)."""
    try:
        return local_kafka(settings).size
    except ChoreoError:
        return 1


async def _target_node(kafka: Kafka, target: str) -> KafkaNode:
    if kafka.size == 1:
        return kafka.nodes[0]
    options = kafka_options(kafka.client_settings)
    quorum = await describe_quorum(options["bootstrap_servers"], options=options)
    leader = quorum.leader_id
    if target == "leader":
        return next(node for node in kafka.nodes if node.node_id == leader)
    return next(node for node in kafka.nodes if node.node_id != leader)


async def restart_broker(settings: Settings, target: str, down_s: float, log: Log) -> str:
    """SIGKILL a Kafka node (``target``: ``node`` or ``leader``), leave it down ``down_s``,
    start it again and wait until the cluster has every broker back."""
    kafka = local_kafka(settings)
    node = await _target_node(kafka, target)
    pid = node.daemon.pid()
    if pid is None:
        raise ChoreoError(f"Kafka node {node.node_id} is not running")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    await asyncio.sleep(down_s)
    await asyncio.to_thread(kafka.start, log)
    return f"node {node.node_id} (pid {pid}) killed, down {down_s:.0f}s, started again"


async def restart_postgres(settings: Settings, log: Log) -> str:
    """Stop PostgreSQL (fast: every session is cut, as in a failover) and start it again."""
    postgres = Postgres(settings, StackSettings())
    if postgres.external:
        raise ChoreoError("PostgreSQL is external: a chaos run restarts only its own stack")
    await asyncio.to_thread(postgres.stop, log)
    await asyncio.to_thread(postgres.start, log)
    return "stopped and started again"
