"""Least-privilege PostgreSQL: a role per process that owns its schema and nothing else.

Every process of :mod:`choreo.registry` gets a ``LOGIN`` role named like its schema
(``choreo_payment`` for the prefix ``choreo.``): not a superuser, no ``CREATEDB``, no
``CREATEROLE``, owner of its own schema (and of what an administrator created in it before),
with no privilege on any other process's schema. The API's role owns only its schema (the
redrive audit) and may ``SELECT`` the projector's tables (also those the projector creates
later, by default privileges); its actions publish events. The runtime schema
(``<prefix>_runtime``: every process instance's circuit breakers and the injected provider
faults, :mod:`events.breaker_board`) is the administrator's: each role may write breaker rows
and read the faults, nothing else there. So is the customers' data keys' schema
(``<prefix>_personal_data``, :mod:`events.personal_data`): only the processes of
:data:`OPENS_PERSONAL_DATA` may read keys (to open a sealed address at the moment of use), none
may write them; the administrator (the client that seals, `choreo customers forget`) does. The
readers (:data:`SEES_KEYS_PRESENT`) may read only which keys exist (``customer_keys_present``).

The administrator, the user of ``CHOREO_DATABASE_URL``, creates the roles idempotently
(:func:`provision_roles`: ``choreo stack up`` and ``choreo run`` with ``CHOREO_DATABASE_ROLES``
on) and keeps its DSN for what administers (the CLI, rebuilds, tests). A role's password is the
HMAC-SHA256 of its name under a key (``CHOREO_DATABASE_ROLE_SECRET``, or a random key kept in
``<state dir>/postgres-roles.key``, mode 0600), so the supervisor hands each child only its own
DSN (:func:`process_env`) and the key never leaves the administrator. Against an existing server
a deployment may also give each process its DSN itself (``DATABASE_URL`` per process).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from choreo import registry
from events import breaker_board, personal_data
from events.database import lock_id, schema_name, unreachable
from events.errors import StackError
from events.process import ProcessSpec
from events.security import derived_password, state_key
from events.settings import Settings

KEY_FILE = "postgres-roles.key"
READS: dict[str, tuple[str, ...]] = {"api": ("projector",)}
"""Processes that read another's tables (SELECT only): reader → the schemas' owners."""
OPENS_PERSONAL_DATA = ("email", "shipping")
"""Processes that may read customers' data keys: they mail to and ship to sealed addresses."""
SEES_KEYS_PRESENT = ("api", "projector")
"""Processes that may read which customers' keys exist (the presence view), not the keys: their
readers show a forgotten customer's sealed values as erased."""


def role_name(settings: Settings, process: str) -> str:
    """The role of ``process``: its schema's name (``<prefix>_<name>``, an identifier)."""
    return schema_name(settings, process)


def role_password(settings: Settings, process: str) -> str:
    """The password of ``process``'s role (hex: safe in a DSN and an SQL literal)."""
    if settings.database_role_secret is not None:
        key = settings.database_role_secret.get_secret_value().encode()
    else:
        key = state_key(settings.state_dir / KEY_FILE)
    return derived_password(key, role_name(settings, process))


def process_dsn(settings: Settings, process: str) -> str:
    """The administrator's DSN with ``process``'s role and password instead of its user."""
    parts = urlsplit(settings.database_url)
    host = parts.netloc.rpartition("@")[2]
    role = quote(role_name(settings, process), safe="")
    netloc = f"{role}:{role_password(settings, process)}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def as_process(settings: Settings, process: str) -> Settings:
    """``settings`` connecting as ``process``'s role when processes run as their own roles (a
    tool doing a process's work in its schema, e.g. a rebuild, so what it makes belongs to the
    process); unchanged otherwise."""
    if not settings.database_roles:
        return settings
    return settings.model_copy(update={"database_url": process_dsn(settings, process)})


def process_env(settings: Settings, process: str) -> dict[str, str]:
    """What a child process's environment sets so that it connects as its own role."""
    return {"DATABASE_URL": process_dsn(settings, process)}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _ensure_role(conn: asyncpg.Connection, role: str, password: str) -> None:
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION"
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    # The password is hex (role_password): a literal with nothing to escape.
    await conn.execute(f"{verb} ROLE {_ident(role)} {attributes} PASSWORD '{password}'")


async def _own_schema(conn: asyncpg.Connection, schema: str, role: str) -> None:
    """``role`` owns ``schema`` and what is in it (objects an administrator made before)."""
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)} AUTHORIZATION {_ident(role)}")
    await conn.execute(f"ALTER SCHEMA {_ident(schema)} OWNER TO {_ident(role)}")
    kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
    rows = await conn.fetch(
        """SELECT c.relname, c.relkind::text AS kind FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_depend d ON d.objid = c.oid AND d.deptype IN ('a', 'i')
             AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           WHERE n.nspname = $1 AND c.relkind::text = ANY($2::text[]) AND d.objid IS NULL
             AND pg_get_userbyid(c.relowner) <> $3""",
        schema,
        list(kinds),
        role,
    )
    for row in rows:  # sequences owned by a column follow their table (skipped above)
        name = f"{_ident(schema)}.{_ident(row['relname'])}"
        await conn.execute(f"ALTER {kinds[row['kind']]} {name} OWNER TO {_ident(role)}")


async def _grant_reads(conn: asyncpg.Connection, reader: str, schema: str, owner: str) -> None:
    await conn.execute(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {_ident(reader)}")
    await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {_ident(schema)} TO {_ident(reader)}")
    await conn.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {_ident(owner)} IN SCHEMA {_ident(schema)} "
        f"GRANT SELECT ON TABLES TO {_ident(reader)}"
    )


async def _runtime_schema(conn: asyncpg.Connection, settings: Settings, roles: list[str]) -> None:
    """The administrator's runtime schema: every role writes its breaker rows, reads faults."""
    schema = await breaker_board.create_tables(conn, settings)
    for role in map(_ident, roles):
        await conn.execute(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {role}")
        await conn.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_ident(schema)}.circuit_breakers TO {role}"
        )
        await conn.execute(f"GRANT SELECT ON {_ident(schema)}.provider_faults TO {role}")


async def _keys_schema(conn: asyncpg.Connection, settings: Settings, names: set[str]) -> None:
    """The administrator's key schema: the processes that open personal data read keys, the
    readers which keys exist."""
    schema = await personal_data.create_tables(conn, settings)
    for process in names:
        role = _ident(role_name(settings, process))
        if process in OPENS_PERSONAL_DATA or process in SEES_KEYS_PRESENT:
            await conn.execute(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {role}")
        if process in OPENS_PERSONAL_DATA:
            await conn.execute(f"GRANT SELECT ON {_ident(schema)}.customer_keys TO {role}")
        if process in SEES_KEYS_PRESENT:
            view = f"{_ident(schema)}.customer_keys_present"
            await conn.execute(f"GRANT SELECT ON {view} TO {role}")


async def provision_roles(
    settings: Settings, processes: Iterable[ProcessSpec] = registry.PROCESSES
) -> list[str]:
    """Create (or bring up to date) the roles of ``processes`` as the administrator of
    ``settings.database_url``: each owns its schema, the readers may read what :data:`READS`
    says. Idempotent; concurrent calls serialize. Returns the roles.

    Raises:
        StackError: PostgreSQL cannot be reached, or the DSN's user may not create roles.
    """
    specs = list(processes)
    names = {spec.name for spec in specs}
    try:
        conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise unreachable(settings, exc) from exc
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_id("choreo:roles"))
            for spec in specs:
                role = role_name(settings, spec.name)
                await _ensure_role(conn, role, role_password(settings, spec.name))
                await _own_schema(conn, spec.schema(settings), role)
            await _runtime_schema(conn, settings, [role_name(settings, s.name) for s in specs])
            await _keys_schema(conn, settings, names)
            for reader, owners in READS.items():
                for owner in (o for o in owners if reader in names and o in names):
                    await _grant_reads(
                        conn,
                        role_name(settings, reader),
                        schema_name(settings, owner),
                        role_name(settings, owner),
                    )
    except asyncpg.InsufficientPrivilegeError as exc:
        raise StackError(f"the database user may not create roles: {exc}") from exc
    finally:
        await conn.close()
    return [role_name(settings, spec.name) for spec in specs]


async def remove_deployment_data(settings: Settings) -> None:
    """Drop the PostgreSQL schemas and roles of the deployment ``settings.topic_prefix`` names
    (a bench's or a test's, once measured or checked), as the administrator."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        schemas = [spec.schema(settings) for spec in registry.PROCESSES]
        extra = [breaker_board.runtime_schema(settings), personal_data.keys_schema(settings)]
        for schema in [*schemas, *extra]:
            await conn.execute(f"DROP SCHEMA IF EXISTS {_ident(schema)} CASCADE")
        for spec in registry.PROCESSES:
            role = role_name(settings, spec.name)
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                await conn.execute(f"DROP OWNED BY {_ident(role)}; DROP ROLE {_ident(role)}")
    finally:
        await conn.close()
