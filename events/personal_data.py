"""Erasable personal data: customers' fields sealed with a key of their own (crypto-shredding).

Event topics keep everything forever, so personal data cannot be deleted from them. Instead,
the producer of an event that carries personal data (``order.placed``, ``return.requested``)
*seals* each personal field with AES-256-GCM under a data key of the customer's own, kept in
PostgreSQL (:class:`PostgresKeyring`, table ``<prefix>_personal_data.customer_keys``). Forgetting
the customer deletes the key: every sealed value of theirs, in every topic, table, dead letter
and backup, is from then on noise, and :func:`open_value` reads it as :data:`ERASED`.

A sealed value stays an Avro string, so every event still decodes with or without the key::

    pii:v1:<customer id, base64url>:<nonce (12 bytes) + ciphertext + tag, base64url>

The customer id (not personal: an opaque CRM id) names the key; the associated data binds the
ciphertext to the customer and the field (``customer_email``...), so a value cannot be moved to
another customer or field. The services that need the plain value (mail, carrier) keep the
sealed value as it arrives and open it only at the moment of use.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Iterator
from typing import Protocol

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.database import Connection, lock_id, schema_name
from events.errors import PermanentError
from events.settings import Settings

PREFIX = "pii:v1:"
SEALED_PATTERN = r"pii:v1:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+"
"""A sealed value (a regular expression, unanchored)."""
ERASED = "[erased]"
"""What a sealed value reads as once its customer's key is deleted."""
FIELDS = frozenset({"customer_email", "customer_name", "recipient", "line1", "line2"})
"""The fields that identify a person, wherever they sit in an event (the address's city,
postcode and country do not)."""
PROCESS = "personal_data"
"""The schema's name after the prefix (``<prefix>_personal_data``)."""
NONCE_BYTES = 12

log = logging.getLogger("choreo.personal_data")

KEYS_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.customer_keys (
    customer_id text        PRIMARY KEY,
    data_key    bytea       NOT NULL CHECK (length(data_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
"""
"""The key table; ``{schema}`` stands for :func:`keys_schema`."""
PRESENT_DDL = """
CREATE OR REPLACE VIEW {schema}.customer_keys_present AS
    SELECT customer_id FROM {schema}.customer_keys;
"""
"""Which customers still have a key, without the keys: readers granted this view (not the
table) tell a forgotten customer's sealed values from a remembered one's."""

_SEALED = re.compile(rf"^{SEALED_PATTERN}$")


class SealError(PermanentError):
    """A sealed value is damaged or belongs to another customer or field: it cannot be opened
    by anyone, and retrying cannot help."""


def keys_schema(settings: Settings) -> str:
    """The schema of the customer key table of the deployment ``settings`` names."""
    return schema_name(settings, PROCESS)


def is_sealed(value: object) -> bool:
    """Whether ``value`` is a sealed value."""
    return isinstance(value, str) and _SEALED.match(value) is not None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(customer_id: str, field: str) -> bytes:
    return f"{customer_id}\x00{field}".encode()


def seal_with(key: bytes, customer_id: str, field: str, plaintext: str) -> str:
    """``plaintext`` sealed under ``key`` for ``customer_id``'s ``field``."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), _aad(customer_id, field))
    return f"{PREFIX}{_b64(customer_id.encode())}:{_b64(nonce + sealed)}"


def sealed_customer(value: str) -> str:
    """The customer a sealed value belongs to.

    Raises:
        SealError: ``value`` is not a well-formed sealed value.
    """
    if not is_sealed(value):
        raise SealError("not a sealed personal value")
    try:
        return _unb64(value[len(PREFIX) :].split(":", 1)[0]).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise SealError("a sealed personal value names no readable customer") from exc


def open_with(key: bytes | None, value: str, field: str) -> str:
    """The plain text of a sealed ``value`` of ``field``: :data:`ERASED` when ``key`` is None
    (the customer was forgotten).

    Raises:
        SealError: the value is damaged, or was sealed for another customer or field.
    """
    customer_id = sealed_customer(value)
    if key is None:
        return ERASED
    try:
        blob = _unb64(value.rsplit(":", 1)[1])
        plain = AESGCM(key).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(customer_id, field)
        )
    except (binascii.Error, ValueError, InvalidTag) as exc:
        raise SealError(f"a sealed {field} of customer {customer_id} cannot be opened") from exc
    return plain.decode()


class Keyring(Protocol):
    """Customers' data keys: made on first use, gone when the customer is forgotten."""

    async def key(self, customer_id: str) -> bytes | None:
        """The customer's key; None when there is none (never made, or forgotten)."""

    async def key_for_sealing(self, customer_id: str) -> bytes:
        """The customer's key, made now if there is none."""

    async def forget(self, customer_id: str) -> bool:
        """Delete the customer's key; False when there was none."""


class InMemoryKeyring:
    """A :class:`Keyring` in a dict (unit tests)."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    async def key(self, customer_id: str) -> bytes | None:
        return self.keys.get(customer_id)

    async def key_for_sealing(self, customer_id: str) -> bytes:
        return self.keys.setdefault(customer_id, AESGCM.generate_key(bit_length=256))

    async def forget(self, customer_id: str) -> bool:
        return self.keys.pop(customer_id, None) is not None


class PostgresKeyring:
    """A :class:`Keyring` on a connection (a handler's, inside its delivery transaction, or a
    tool's), in :func:`keys_schema`.

    It remembers the keys it read for its own lifetime, one delivery or one tool call, so an
    event's several sealed fields of one customer cost one query; a forget in another
    transaction meanwhile is no different from one just after this transaction.
    """

    def __init__(self, conn: Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self._known: dict[str, bytes | None] = {}

    async def key(self, customer_id: str) -> bytes | None:
        if customer_id not in self._known:
            self._known[customer_id] = await self.conn.fetchval(
                f"SELECT data_key FROM {self.schema}.customer_keys WHERE customer_id = $1",
                customer_id,
            )
        return self._known[customer_id]

    async def key_for_sealing(self, customer_id: str) -> bytes:
        known = self._known.get(customer_id)
        if known is not None:
            return known
        # One round trip: the insert, or the key already there. A concurrent first order of
        # the same customer that commits after this statement's snapshot makes the insert
        # conflict and the select miss it: read it again then.
        key: bytes | None = await self.conn.fetchval(
            f"WITH made AS (INSERT INTO {self.schema}.customer_keys (customer_id, data_key)"
            " VALUES ($1, $2) ON CONFLICT (customer_id) DO NOTHING RETURNING data_key)"
            " SELECT data_key FROM made UNION ALL"
            f" SELECT data_key FROM {self.schema}.customer_keys WHERE customer_id = $1",
            customer_id,
            AESGCM.generate_key(bit_length=256),
        )
        if key is None:
            self._known.pop(customer_id, None)
            key = await self.key(customer_id)
        assert key is not None  # inserted just now or before; a forget in between is a race
        self._known[customer_id] = key
        return key

    async def forget(self, customer_id: str) -> bool:
        deleted = await self.conn.fetchval(
            f"DELETE FROM {self.schema}.customer_keys WHERE customer_id = $1 RETURNING 1",
            customer_id,
        )
        self._known[customer_id] = None
        return deleted is not None


async def create_tables(conn: Connection, settings: Settings) -> str:
    """Create the key schema, table and presence view (as the administrator, idempotently);
    returns the schema."""
    schema = keys_schema(settings)
    async with conn.transaction():  # concurrent first starts: `IF NOT EXISTS` alone can race
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_id(f"migrate:{schema}"))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(KEYS_DDL.format(schema=schema))
        await conn.execute(PRESENT_DDL.format(schema=schema))
    return schema


async def seal(keyring: Keyring, customer_id: str, field: str, plaintext: str) -> str:
    """``plaintext`` sealed under the customer's key (made if needed)."""
    return seal_with(await keyring.key_for_sealing(customer_id), customer_id, field, plaintext)


async def open_value(keyring: Keyring, value: str, field: str) -> str:
    """The plain text of ``value`` of ``field``: itself when it is not sealed (events written
    before sealing), :data:`ERASED` when its customer was forgotten.

    Raises:
        SealError: the value is damaged, or was sealed for another customer or field.
    """
    if not value.startswith(PREFIX):
        return value
    return open_with(await keyring.key(sealed_customer(value)), value, field)


SHOWN = "[sealed]"
"""What a sealed value reads as where people read payloads (the CLI, the console) while its
customer's key exists."""


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def sealed_customers(value: object) -> frozenset[str]:
    """The customers whose sealed values ``value`` (payloads, or anything in them) holds."""
    found: set[str] = set()
    for text in _strings(value):
        if is_sealed(text):
            try:
                found.add(sealed_customer(text))
            except SealError:
                continue  # damaged: names no customer, shown as any sealed value
    return frozenset(found)


def is_erased(value: object, forgotten: frozenset[str]) -> bool:
    """Whether ``value`` is sealed for a customer of ``forgotten`` (whose key is gone)."""
    if not forgotten or not isinstance(value, str) or not is_sealed(value):
        return False
    try:
        return sealed_customer(value) in forgotten
    except SealError:
        return False


async def forgotten_customers(
    conn: Connection | asyncpg.Pool, schema: str, value: object
) -> frozenset[str]:
    """The customers with sealed values in ``value`` whose key is gone, in one query of the
    presence view (``conn``: a connection or pool allowed to read it; the keys are not read).
    Empty when the deployment has no key schema yet or ``conn`` may not read the view (logged):
    erased is said only when known, and a reader still shows its page, masked."""
    customers = sealed_customers(value)
    if not customers:
        return frozenset()
    try:
        rows = await conn.fetch(
            f"SELECT customer_id FROM {schema}.customer_keys_present"
            " WHERE customer_id = ANY($1::text[])",
            sorted(customers),
        )
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return frozenset()
    except asyncpg.InsufficientPrivilegeError as exc:
        log.warning("which customers were forgotten is unknown (sealed values masked): %s", exc)
        return frozenset()
    return customers - {r["customer_id"] for r in rows}


def conceal(value: object, forgotten: frozenset[str] = frozenset()) -> object:
    """``value`` (a payload, or anything in it) with every sealed value shown as
    :data:`SHOWN`, or :data:`ERASED` when its customer is in ``forgotten``
    (:func:`forgotten_customers`): tools that print payloads never open personal data, nor
    print ciphertext."""
    if isinstance(value, dict):
        return {k: conceal(v, forgotten) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [conceal(v, forgotten) for v in value]
    if is_erased(value, forgotten):
        return ERASED
    return SHOWN if is_sealed(value) else value
