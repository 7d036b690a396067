"""Least-privilege PostgreSQL on the real server: each process's role owns its schema, uses it,
and is refused everything else (choreo/roles.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from pydantic import SecretStr

from choreo import registry
from choreo.roles import process_dsn, provision_roles, remove_deployment_data, role_name
from events import breaker_board
from events.breaker_board import runtime_schema
from events.database import Database, schema_name
from events.settings import Settings

pytestmark = pytest.mark.integration

PROCESSES = ("inventory", "payment", "projector", "api")


@pytest.fixture
async def roles(settings: Settings) -> AsyncIterator[Settings]:
    """The roles of four processes for this test's prefix; a table the administrator made in
    the payment schema before the roles existed."""
    # A key of the test's own: the shared state dir's key file is left alone.
    settings = settings.model_copy(
        update={"database_roles": True, "database_role_secret": SecretStr("test-key")}
    )
    payment = schema_name(settings, "payment")
    async with Database(settings) as admin:
        await admin.pool.execute(f"CREATE SCHEMA {payment}; CREATE TABLE {payment}.legacy (x int)")
    specs = [registry.get(name) for name in PROCESSES]
    try:
        await provision_roles(settings, specs)
        await provision_roles(settings, specs)  # idempotent
        yield settings
    finally:
        await remove_deployment_data(settings)


async def connect_as(settings: Settings, process: str) -> asyncpg.Connection:
    return await asyncpg.connect(process_dsn(settings, process))


async def test_the_payment_role_uses_its_schema_and_cannot_read_the_inventory_schema(
    roles: Settings,
):
    settings = roles
    inventory, payment = schema_name(settings, "inventory"), schema_name(settings, "payment")
    # Each service migrates its own tables as its own role, as it does when it starts.
    for name in ("inventory", "payment"):
        as_role = settings.model_copy(update={"database_url": process_dsn(settings, name)})
        async with Database(as_role) as db:
            await db.migrate(schema_name(settings, name), *registry.get(name).build(settings).ddl)

    conn = await connect_as(settings, "payment")
    try:
        assert await conn.fetchval("SELECT current_user") == role_name(settings, "payment")
        await conn.execute(
            f"INSERT INTO {payment}.inbox (consumer, event_id, event_type) "
            "VALUES ('c', gen_random_uuid(), 'order.approved')"
        )
        assert await conn.fetchval(f"SELECT count(*) FROM {payment}.inbox") == 1
        await conn.execute(f"INSERT INTO {payment}.legacy VALUES (1)")  # made by the admin
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.fetch(f"SELECT * FROM {inventory}.inbox")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(f"CREATE TABLE {inventory}.stolen (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(f"CREATE SCHEMA {payment}_more")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(f"CREATE ROLE {payment}_friend")
    finally:
        await conn.close()


async def test_the_api_role_reads_the_projectors_tables_and_writes_nothing(roles: Settings):
    settings = roles
    projector, inventory = schema_name(settings, "projector"), schema_name(settings, "inventory")
    owner = await connect_as(settings, "projector")
    api = await connect_as(settings, "api")
    try:
        # A table the projector makes after the roles were provisioned (as a rebuild does).
        await owner.execute(f"CREATE TABLE {projector}.order_status (id text); "
                            f"INSERT INTO {projector}.order_status VALUES ('ord-1')")  # fmt: skip
        assert await api.fetchval(f"SELECT id FROM {projector}.order_status") == "ord-1"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await api.execute(f"INSERT INTO {projector}.order_status VALUES ('ord-2')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await api.execute(f"CREATE TABLE {projector}.mine (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await owner.fetch(f"SELECT * FROM {inventory}.inbox")
    finally:
        await owner.close()
        await api.close()


async def test_every_role_writes_its_breakers_and_only_reads_the_injected_faults(
    roles: Settings,
):
    runtime = runtime_schema(roles)
    payment = await connect_as(roles, "payment")
    try:
        # What a process does at start (the tables exist: nothing to create) and per round.
        as_role = roles.model_copy(update={"database_url": process_dsn(roles, "payment")})
        async with Database(as_role) as db:
            assert await breaker_board.migrate(db, as_role) == runtime
        await payment.execute(
            f"INSERT INTO {runtime}.circuit_breakers (process, instance, provider, state, since,"
            " failures, opened, deferred, in_use, concurrency, fault_rate)"
            " VALUES ('payment', 'h:1', 'gateway', 'closed', now(), 0, 0, 0, 0, 8, 0)"
        )
        assert await payment.fetchval(f"SELECT count(*) FROM {runtime}.provider_faults") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await payment.execute(
                f"INSERT INTO {runtime}.provider_faults (provider, failure_rate, until)"
                " VALUES ('gateway', 1, now())"
            )
    finally:
        await payment.close()


async def test_over_the_local_stacks_socket_a_role_still_needs_its_password(roles: Settings):
    settings = roles
    dsn = process_dsn(settings, "payment")
    assert "host=/" in dsn, f"the local stack is reached over its Unix socket: {dsn}"
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT inet_server_addr() IS NULL") is True  # a socket
        assert await conn.fetchval("SELECT current_user") == role_name(settings, "payment")
    finally:
        await conn.close()
    parts = urlsplit(dsn)
    forged = urlunsplit(parts._replace(netloc=f"{parts.username}:not-the-password@"))
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(forged)
