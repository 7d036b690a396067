"""Customers' data keys on the real PostgreSQL: made once, deleted by forgetting, and readable
only by the processes that open personal data (choreo/roles.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

from choreo import registry
from choreo.customers import forget_customer
from choreo.roles import process_dsn, provision_roles, remove_deployment_data
from events.database import Database
from events.personal_data import (
    ERASED,
    PostgresKeyring,
    create_tables,
    forgotten_customers,
    keys_schema,
    open_value,
    seal,
)
from events.settings import Settings

pytestmark = pytest.mark.integration

PROCESSES = ("email", "payment", "api")


@pytest.fixture
async def roles(settings: Settings) -> AsyncIterator[Settings]:
    """The roles of a process that opens personal data (email), one that does not (payment) and
    a reader (the API)."""
    settings = settings.model_copy(
        update={"database_roles": True, "database_role_secret": SecretStr("test-key")}
    )
    try:
        await provision_roles(settings, [registry.get(name) for name in PROCESSES])
        yield settings
    finally:
        await remove_deployment_data(settings)


async def test_a_key_is_made_once_and_forgetting_deletes_it(settings: Settings):
    async with Database(settings) as admin, admin.pool.acquire() as conn:
        schema = await create_tables(conn, settings)
        await create_tables(conn, settings)  # idempotent
        try:
            keyring = PostgresKeyring(conn, schema)
            assert await keyring.key("cus-1") is None
            sealed = await seal(keyring, "cus-1", "customer_email", "ada@example.com")
            key = await keyring.key("cus-1")
            assert key is not None
            assert len(key) == 32
            assert await keyring.key_for_sealing("cus-1") == key
            assert await open_value(keyring, sealed, "customer_email") == "ada@example.com"
            stored = await conn.fetchval(f"SELECT count(*) FROM {schema}.customer_keys")
            assert stored == 1
            done = await forget_customer(settings, "cus-1")
            assert done.key_deleted
            assert not done.log_checked  # this test has no projector
            # A keyring remembers what it read (one delivery's worth): a new one reads again.
            assert await keyring.key("cus-1") == key
            keyring = PostgresKeyring(conn, schema)
            assert await keyring.key("cus-1") is None
            assert await open_value(keyring, sealed, "customer_email") == ERASED
            assert not (await forget_customer(settings, "cus-1")).key_deleted
        finally:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_concurrent_first_seals_of_a_customer_share_one_key(settings: Settings):
    async with Database(settings) as admin:
        async with admin.pool.acquire() as conn:
            schema = await create_tables(conn, settings)
        try:
            async with admin.pool.acquire() as first, admin.pool.acquire() as second:
                first_tx, second_tx = first.transaction(), second.transaction()
                await first_tx.start()
                await second_tx.start()
                made = await PostgresKeyring(first, schema).key_for_sealing("cus-race")
                # The second insert waits on the first's row; its snapshot predates the commit.
                racing = asyncio.create_task(
                    PostgresKeyring(second, schema).key_for_sealing("cus-race")
                )
                await asyncio.sleep(0.2)
                assert not racing.done()
                await first_tx.commit()
                assert await racing == made
                await second_tx.commit()
        finally:
            async with admin.pool.acquire() as conn:
                await conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_only_the_processes_that_open_personal_data_may_read_keys(roles: Settings):
    schema = keys_schema(roles)
    async with Database(roles) as admin, admin.pool.acquire() as conn:
        await seal(PostgresKeyring(conn, schema), "cus-1", "customer_email", "ada@example.com")
    email = await asyncpg.connect(process_dsn(roles, "email"))
    payment = await asyncpg.connect(process_dsn(roles, "payment"))
    try:
        assert await PostgresKeyring(email, schema).key("cus-1") is not None
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await PostgresKeyring(email, schema).forget("cus-1")  # reads, never deletes
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await PostgresKeyring(email, schema).key_for_sealing("cus-2")  # ... nor makes
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await PostgresKeyring(payment, schema).key("cus-1")
    finally:
        await email.close()
        await payment.close()


async def test_readers_see_which_keys_exist_but_not_the_keys(roles: Settings):
    schema = keys_schema(roles)
    async with Database(roles) as admin, admin.pool.acquire() as conn:
        keyring = PostgresKeyring(conn, schema)
        kept = await seal(keyring, "cus-kept", "customer_email", "ada@example.com")
        gone = await seal(keyring, "cus-gone", "customer_email", "bob@example.com")
        assert await keyring.forget("cus-gone")
    payloads = [{"customer_email": kept}, {"customer_email": gone}, {"city": "London"}]
    api = await asyncpg.connect(process_dsn(roles, "api"))
    payment = await asyncpg.connect(process_dsn(roles, "payment"))
    try:
        assert await forgotten_customers(api, schema, payloads) == {"cus-gone"}
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await PostgresKeyring(api, schema).key("cus-kept")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await api.fetch(f"SELECT * FROM {schema}.customer_keys")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await payment.fetch(f"SELECT * FROM {schema}.customer_keys_present")
        # A reader without the grant still shows its page: masked, never erased on a guess.
        assert await forgotten_customers(payment, schema, payloads) == set()
    finally:
        await api.close()
        await payment.close()


async def test_erased_is_said_only_where_the_key_table_exists(settings: Settings):
    sealed = "pii:v1:Y3VzLTE:AAAA"  # cus-1's
    async with Database(settings) as admin:
        assert await forgotten_customers(admin.pool, keys_schema(settings), [sealed]) == set()
