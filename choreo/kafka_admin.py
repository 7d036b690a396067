"""Kafka admin requests aiokafka's admin client lacks: SCRAM users and ACL bindings in bulk.

``AlterUserScramCredentials`` (API key 51, what ``kafka-configs --alter --add-config
SCRAM-SHA-512=[...]`` sends) creates or changes SCRAM users; the client salts and hashes the
password (PBKDF2, RFC 5802's ``Hi``), so the broker never sees it. ``CreateAcls`` (API key 30)
is declared by aiokafka with one binding per request; :class:`CreateAclBindings` sends many in
one. Both go through aiokafka's client, as :mod:`choreo.stack.quorum` sends DescribeQuorum (the
JVM tools would take a second or two of JVM start per call).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest_v1, DescribeAclsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from events.errors import StackError

SCRAM_SHA_512 = 2
"""Kafka's code of the SCRAM-SHA-512 mechanism."""
SCRAM_ITERATIONS = 4096
"""Kafka's minimum for SCRAM-SHA-512 (a client authenticates once per connection)."""

# Kafka's ACL codes (org.apache.kafka.common.acl / resource).
TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID = 2, 3, 4, 5
READ, WRITE, CREATE, DESCRIBE, IDEMPOTENT_WRITE = 3, 4, 5, 8, 12
ANY, LITERAL, PREFIXED = 1, 3, 4
ALLOW = 3
RESOURCE_NAMES = {TOPIC: "topic", GROUP: "group", CLUSTER: "cluster", TRANSACTIONAL_ID: "txn"}
OPERATION_NAMES = {READ: "read", WRITE: "write", CREATE: "create", DESCRIBE: "describe"}


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ALLOW rule: ``principal`` may do ``operation`` on the resource(s) named."""

    principal: str
    resource_type: int
    name: str
    operation: int
    pattern: int = LITERAL

    def __str__(self) -> str:
        star = "*" if self.pattern == PREFIXED else ""
        what = f"{RESOURCE_NAMES.get(self.resource_type, self.resource_type)}:{self.name}{star}"
        return f"{self.principal} {OPERATION_NAMES.get(self.operation, self.operation)} {what}"


class AlterUserScramCredentialsResponse_v0(Response):  # type: ignore[misc]  # aiokafka untyped
    """Kafka's ``AlterUserScramCredentialsResponse.json``, version 0."""

    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user_name", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):  # type: ignore[misc]
    """Kafka's ``AlterUserScramCredentialsRequest.json``, version 0."""

    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class UpsertScramUsers(Request[AlterUserScramCredentialsRequest_v0]):  # type: ignore[misc]
    """SCRAM-SHA-512 credentials for each (user, password), salted here."""

    API_KEY = 51

    def __init__(self, users: Sequence[tuple[str, str]]) -> None:
        self.upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]] = []
        for name, password in users:
            salt = secrets.token_bytes(32)
            salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
            self.upsertions.append((name, SCRAM_SHA_512, SCRAM_ITERATIONS, salt, salted, {}))

    def build(
        self, request_struct_class: type[AlterUserScramCredentialsRequest_v0]
    ) -> AlterUserScramCredentialsRequest_v0:
        return request_struct_class([], self.upsertions, {})


class CreateAclBindings(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    """Many ALLOW bindings in one CreateAcls request (version 1: pattern types)."""

    API_KEY = 30

    def __init__(self, bindings: Sequence[AclBinding]) -> None:
        self.bindings = list(bindings)

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(
            [
                (b.resource_type, b.name, b.pattern, b.principal, "*", b.operation, ALLOW)
                for b in self.bindings
            ]
        )


async def upsert_scram_users(admin: AIOKafkaAdminClient, users: Sequence[tuple[str, str]]) -> None:
    """Create each user, or set its password (idempotent).

    Raises:
        StackError: the broker refused one (e.g. the admin is not authorized).
    """
    if not users:
        return
    response: Any = await admin._send_request(UpsertScramUsers(users))
    failures = [f"{name}: {message or code}" for name, code, message, _ in response.results if code]
    if failures:
        raise StackError("could not set SCRAM credentials: " + "; ".join(failures))


async def create_acls(admin: AIOKafkaAdminClient, bindings: Sequence[AclBinding]) -> None:
    """Add ``bindings`` (one already there is no error: the authorizer keeps one copy).

    Raises:
        StackError: the broker refused one.
    """
    if not bindings:
        return
    response: Any = await admin._send_request(CreateAclBindings(bindings))
    failures = [
        f"{binding}: {message or code}"
        for binding, (code, message) in zip(bindings, response.creation_responses, strict=True)
        if code
    ]
    if failures:
        raise StackError("could not create ACLs: " + "; ".join(failures))


async def wait_until_applied(
    admin: AIOKafkaAdminClient, bindings: Sequence[AclBinding], timeout_s: float = 30.0
) -> None:
    """Wait until every broker authorizes with ``bindings`` (and so knows the users made
    before them): the controller acknowledges a change before the brokers have applied it
    from the metadata log, and a broker answers DescribeAcls from its own authorizer.

    Raises:
        StackError: a broker did not apply them within ``timeout_s``.
    """
    if not bindings:
        return
    last = bindings[-1].principal
    expected = sum(1 for b in bindings if b.principal == last)
    request = DescribeAclsRequest(ANY, None, ANY, last, None, ANY, ANY)
    deadline = time.monotonic() + timeout_s
    for broker in admin._client.cluster.brokers():
        while True:
            response: Any = await admin._send_request_to_node(broker.nodeId, request)
            found = sum(len(resource[-1]) for resource in response.resources)
            if found >= expected:
                break
            if time.monotonic() > deadline:
                raise StackError(f"broker {broker.nodeId} did not apply the ACLs of {last}")
            await asyncio.sleep(0.05)
