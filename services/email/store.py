"""Email state: each order's recipient and the mails sent for it (one per template at most).

A return's recipient and mail are kept the same way, under the return id in ``order_id`` (the
saga's key; return ids and order ids never coincide).

Handlers see the :class:`EmailStore` protocol. :class:`PostgresEmailStore` runs inside the
delivery's transaction; :class:`InMemoryEmailStore` backs the unit tests.
``tests/integration/services/test_stores.py`` runs one contract suite against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contracts.catalog import EmailTemplate
from events.database import Connection

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.recipients (
    order_id text PRIMARY KEY,
    email    text NOT NULL,
    name     text
);
CREATE TABLE IF NOT EXISTS {schema}.sent_emails (
    order_id   text        NOT NULL,
    template   text        NOT NULL,
    message_id text        NOT NULL,
    sent_at    timestamptz NOT NULL,
    -- At most one mail per order and template.
    PRIMARY KEY (order_id, template)
);
"""
"""The email service's tables; ``{schema}`` stands for the service's schema."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who gets an order's mails. ``email`` is personal data: never log it."""

    order_id: str
    email: str
    name: str | None

    def __repr__(self) -> str:
        # Keeps the address out of logs and tracebacks that print the object.
        return f"Recipient(order_id={self.order_id!r}, email=<redacted>)"


@dataclass(frozen=True, slots=True)
class SentEmail:
    """A mail the provider accepted for an order."""

    order_id: str
    template: EmailTemplate
    message_id: str
    sent_at: datetime


class EmailStore(Protocol):
    """The operations the email handlers need."""

    async def save_recipient(self, recipient: Recipient) -> bool:
        """Remember the recipient; False (and nothing changed) when one was already there."""

    async def recipient(self, order_id: str) -> Recipient | None:
        """The order's recipient, if ``order.placed`` was seen."""

    async def record_sent(
        self, order_id: str, template: EmailTemplate, message_id: str, at: datetime
    ) -> SentEmail:
        """Record a sent mail; the first record per (order, template) wins and is returned."""

    async def sent(self, order_id: str) -> list[SentEmail]:
        """The mails sent for the order, by template (the invariant query)."""

    async def sent_and_recipient(self, order_id: str) -> tuple[list[SentEmail], Recipient | None]:
        """:meth:`sent` and :meth:`recipient` of the order, read together (a send needs
        both)."""


class PostgresEmailStore:
    """:class:`EmailStore` on the delivery transaction's connection."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    async def save_recipient(self, recipient: Recipient) -> bool:
        inserted = await self.conn.fetchval(
            f"INSERT INTO {self.schema}.recipients (order_id, email, name) VALUES ($1, $2, $3)"
            " ON CONFLICT (order_id) DO NOTHING RETURNING true",
            recipient.order_id,
            recipient.email,
            recipient.name,
        )
        return bool(inserted)

    async def recipient(self, order_id: str) -> Recipient | None:
        row = await self.conn.fetchrow(
            f"SELECT order_id, email, name FROM {self.schema}.recipients WHERE order_id = $1",
            order_id,
        )
        return Recipient(**dict(row)) if row else None

    async def record_sent(
        self, order_id: str, template: EmailTemplate, message_id: str, at: datetime
    ) -> SentEmail:
        row = await self.conn.fetchrow(
            f"INSERT INTO {self.schema}.sent_emails (order_id, template, message_id, sent_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (order_id, template) DO NOTHING"
            " RETURNING order_id, template, message_id, sent_at",
            order_id,
            template,
            message_id,
            at,
        )
        if row is None:  # recorded before: the first record stands
            row = await self.conn.fetchrow(
                f"SELECT order_id, template, message_id, sent_at FROM {self.schema}.sent_emails"
                " WHERE order_id = $1 AND template = $2",
                order_id,
                template,
            )
        return SentEmail(**dict(row))

    async def sent(self, order_id: str) -> list[SentEmail]:
        rows = await self.conn.fetch(
            f"SELECT order_id, template, message_id, sent_at FROM {self.schema}.sent_emails"
            " WHERE order_id = $1 ORDER BY template",
            order_id,
        )
        return [SentEmail(**dict(row)) for row in rows]

    async def sent_and_recipient(self, order_id: str) -> tuple[list[SentEmail], Recipient | None]:
        rows = await self.conn.fetch(
            "SELECT r.order_id AS recipient_of, r.email, r.name,"
            " s.template, s.message_id, s.sent_at"
            " FROM (SELECT $1::text AS key) AS k"
            f" LEFT JOIN {self.schema}.recipients AS r ON r.order_id = k.key"
            f" LEFT JOIN {self.schema}.sent_emails AS s ON s.order_id = k.key"
            " ORDER BY s.template",
            order_id,
        )
        first = rows[0]  # one row at least, whatever the joins found
        recipient = (
            Recipient(order_id, first["email"], first["name"])
            if first["recipient_of"] is not None
            else None
        )
        sent = [
            SentEmail(order_id, row["template"], row["message_id"], row["sent_at"])
            for row in rows
            if row["template"] is not None
        ]
        return sent, recipient


class InMemoryEmailStore:
    """:class:`EmailStore` in dictionaries, for unit tests (single task, no rollback)."""

    def __init__(self) -> None:
        self._recipients: dict[str, Recipient] = {}
        self._sent: dict[tuple[str, str], SentEmail] = {}

    async def save_recipient(self, recipient: Recipient) -> bool:
        if recipient.order_id in self._recipients:
            return False
        self._recipients[recipient.order_id] = recipient
        return True

    async def recipient(self, order_id: str) -> Recipient | None:
        return self._recipients.get(order_id)

    async def record_sent(
        self, order_id: str, template: EmailTemplate, message_id: str, at: datetime
    ) -> SentEmail:
        return self._sent.setdefault(
            (order_id, template), SentEmail(order_id, template, message_id, at)
        )

    async def sent(self, order_id: str) -> list[SentEmail]:
        return sorted(
            (mail for (oid, _), mail in self._sent.items() if oid == order_id),
            key=lambda mail: mail.template,
        )

    async def sent_and_recipient(self, order_id: str) -> tuple[list[SentEmail], Recipient | None]:
        return await self.sent(order_id), self._recipients.get(order_id)
