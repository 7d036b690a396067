"""The local stack: Apache Kafka (KRaft), PostgreSQL and Jaeger, installed and run without Docker.

Each component installs what it lacks (Kafka jars from Maven Central, PostgreSQL from Debian's
packages, Jaeger built from the Go module proxy), starts as a background process owned by this
checkout, and is waited for until it answers. Everything it writes lives in the state folder
(``.state/`` by default); downloads are cached machine-wide (``~/.cache/choreo``) so a second
checkout starts in seconds. A component whose address was given in the environment
(``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``OTEL_EXPORTER_OTLP_ENDPOINT``) is external:
it is neither installed nor started, only checked.
"""

from __future__ import annotations

import asyncio

from choreo.kafka_access import provision_kafka_access
from choreo.roles import provision_roles
from choreo.stack.base import Component, ComponentStatus, Log, StackSettings
from choreo.stack.jaeger import Jaeger
from choreo.stack.kafka import Kafka
from choreo.stack.postgres import Postgres
from events.settings import Settings, get_settings

__all__ = ["ComponentStatus", "Stack", "StackSettings"]


class Stack:
    """The three components, in start order."""

    def __init__(
        self,
        settings: Settings | None = None,
        stack: StackSettings | None = None,
        *,
        brokers: int | None = None,
    ) -> None:
        """``brokers``: the KRaft nodes of a new Kafka cluster (see :class:`Kafka`)."""
        self.settings = settings or get_settings()
        self.stack = stack or StackSettings()
        self.kafka = Kafka(self.settings, self.stack, brokers)
        self.components: list[Component] = [
            Postgres(self.settings, self.stack),
            self.kafka,
            Jaeger(self.settings, self.stack),
        ]

    def up(self, log: Log) -> list[ComponentStatus]:
        for component in self.components:
            component.install(log)
        for component in self.components:
            component.start(log)
        if self.settings.database_roles:
            roles = asyncio.run(provision_roles(self.settings))
            log(f"PostgreSQL roles ready: {', '.join(roles)}")
        if self.kafka.secure and not self.kafka.external:
            users = asyncio.run(provision_kafka_access(self.kafka.client_settings))
            log(f"Kafka users and ACLs ready: {', '.join(users)}")
        return self.status()

    def down(self, log: Log) -> None:
        for component in reversed(self.components):
            component.stop(log)

    def status(self) -> list[ComponentStatus]:
        return [status for component in self.components for status in component.status()]
