"""Forgetting a customer: delete their data key, and say what forgetting cannot erase.

Personal fields written since sealing (``order.placed`` v4, ``return.requested`` v2 with
``personal_data`` ``sealed``) are sealed under the customer's key (:mod:`events.personal_data`):
deleting the key erases them everywhere at once. Events written before sealing carry the
personal fields as plain text in the topics (kept forever) and in every table fed from them:
:func:`forget_customer` finds them in the projector's event log and reports them, so an operator
knows what is left to erase by other means (compacting or rewriting the topics, dropping the
old tables' rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from events import personal_data
from events.database import schema_name, unreachable
from events.settings import Settings

SEALING_EVENTS = ("order.placed", "return.requested")
"""The event types that carry personal data."""


@dataclass(frozen=True, slots=True)
class PlainEvent:
    """An event of the customer's written before sealing: its personal fields are plain text."""

    event_type: str
    saga_key: str
    event_id: str
    schema_version: int


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forgetting a customer did."""

    customer_id: str
    key_deleted: bool
    """False: there was no key (nothing of theirs sealed, or forgotten before)."""
    log_checked: bool
    """Whether the projector's event log could be searched for plain events."""
    plain_events: list[PlainEvent] = field(default_factory=list)
    """The customer's events with plain personal fields, which forgetting cannot erase."""


async def forget_customer(settings: Settings, customer_id: str) -> Forgotten:
    """Delete ``customer_id``'s data key (as the administrator) and list their plain events.

    Raises:
        StackError: PostgreSQL cannot be reached.
    """
    try:
        conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise unreachable(settings, exc) from exc
    try:
        schema = await personal_data.create_tables(conn, settings)
        deleted = await personal_data.PostgresKeyring(conn, schema).forget(customer_id)
        log = f"{schema_name(settings, 'projector')}.event_log"
        if await conn.fetchval("SELECT to_regclass($1)", log) is None:
            return Forgotten(customer_id, deleted, log_checked=False)
        rows = await conn.fetch(
            f"""SELECT event_type, order_id, event_id::text AS event_id, schema_version
                FROM {log}
                WHERE event_type = ANY($2::text[]) AND payload->>'customer_id' = $1
                  AND coalesce(payload->>'personal_data', 'plain') <> 'sealed'
                ORDER BY position""",
            customer_id,
            list(SEALING_EVENTS),
        )
    finally:
        await conn.close()
    plain = [
        PlainEvent(r["event_type"], r["order_id"], r["event_id"], r["schema_version"]) for r in rows
    ]
    return Forgotten(customer_id, deleted, log_checked=True, plain_events=plain)
