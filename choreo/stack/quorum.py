"""Who leads the KRaft controller quorum: Kafka's DescribeQuorum request, over aiokafka.

A KRaft cluster elects one of its controllers leader of the metadata log
(``__cluster_metadata``). Kafka's clients hide which one: the controller id a Metadata or
DescribeCluster response names is a random live broker. The DescribeQuorum request (API key 55,
what ``kafka-metadata-quorum.sh describe --status`` sends, and what a broker forwards to the
active controller) answers it. aiokafka has no method for it, so this module declares the
request and response structures (version 0: flexible, compact strings and arrays) with
aiokafka's protocol types and sends it through aiokafka's client; the JVM tool would need the
``kafka-tools`` jars, which the stack does not fetch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

from events.errors import StackError

METADATA_TOPIC = "__cluster_metadata"
"""The KRaft metadata log, whose partition 0's leader is the active controller."""

_REPLICA_STATE = CompactArray(
    ("replica_id", Int32), ("log_end_offset", Int64), ("tags", TaggedFields)
)


class DescribeQuorumResponse_v0(Response):  # type: ignore[misc]  # aiokafka is untyped here
    """Kafka's ``DescribeQuorumResponse.json``, version 0."""

    API_KEY = 55
    API_VERSION = 0
    SCHEMA = Schema(
        ("error_code", Int16),
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("high_watermark", Int64),
                        ("current_voters", _REPLICA_STATE),
                        ("observers", _REPLICA_STATE),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest_v0(RequestStruct):  # type: ignore[misc]
    """Kafka's ``DescribeQuorumRequest.json``, version 0."""

    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 0
    RESPONSE_TYPE = DescribeQuorumResponse_v0
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_name", CompactString("utf-8")),
                ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class DescribeQuorumRequest(Request[DescribeQuorumRequest_v0]):  # type: ignore[misc]
    """The metadata log's quorum, as the version the broker and this module share builds it."""

    API_KEY = 55

    def build(
        self, request_struct_class: type[DescribeQuorumRequest_v0]
    ) -> DescribeQuorumRequest_v0:
        return request_struct_class([(METADATA_TOPIC, [(0, {})], {})], {})


@dataclass(frozen=True, slots=True)
class Quorum:
    """The controller quorum as its leader describes it."""

    leader_id: int
    leader_epoch: int
    high_watermark: int
    voters: dict[int, int]
    """Each voter's node id: the offset of the metadata log it has (-1 if unknown)."""


async def describe_quorum(
    bootstrap_servers: str, *, timeout_ms: int = 5000, options: Mapping[str, Any] | None = None
) -> Quorum:
    """The KRaft controller quorum of the cluster at ``bootstrap_servers`` (``options``: the
    client's TLS and SASL arguments, :func:`events.security.kafka_options`).

    Raises:
        StackError: no broker answered, or the quorum reported an error (e.g. no leader yet).
    """
    admin = AIOKafkaAdminClient(
        **{**(options or {}), "bootstrap_servers": bootstrap_servers},
        request_timeout_ms=timeout_ms,
    )
    try:
        await admin.start()
        # aiokafka's admin client sends a request to any live broker this way; a broker
        # forwards DescribeQuorum to the active controller.
        response: Any = await admin._send_request(DescribeQuorumRequest())
    except Exception as exc:
        raise StackError(f"cannot describe the KRaft quorum at {bootstrap_servers}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    partition = response.topics[0][1][0] if response.topics else None
    if response.error_code or partition is None or partition[1]:
        code = response.error_code or (partition[1] if partition is not None else "no partition")
        raise StackError(f"the KRaft quorum at {bootstrap_servers} answered error {code}")
    _, _, leader_id, leader_epoch, high_watermark, voters, _observers, _ = partition
    return Quorum(
        leader_id=leader_id,
        leader_epoch=leader_epoch,
        high_watermark=high_watermark,
        voters={replica_id: offset for replica_id, offset, _ in voters},
    )
