"""The coordinator's tables and its longer statements (:mod:`saga_coordinator.store` runs them)."""

from __future__ import annotations

DDL: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS {schema}.saga_events (
        order_id    text        NOT NULL,
        seq         integer     NOT NULL CHECK (seq >= 1),
        kind        text        NOT NULL,
        event_id    uuid,
        data        jsonb       NOT NULL,
        recorded_at timestamptz NOT NULL,
        PRIMARY KEY (order_id, seq)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS {schema}.saga_timers (
        order_id text        NOT NULL,
        name     text        NOT NULL,
        due_at   timestamptz NOT NULL,
        PRIMARY KEY (order_id, name)
    )
    """,
    # The W3C trace context the timer was set in: firing it continues the order's trace.
    "ALTER TABLE {schema}.saga_timers ADD COLUMN IF NOT EXISTS traceparent text",
    "CREATE INDEX IF NOT EXISTS saga_timers_due_at ON {schema}.saga_timers (due_at)",
    # A due timer the live loop holds back (saga_coordinator.fairness): when to look again,
    # and the answer topics' end offsets it waits for the coordinator to pass.
    "ALTER TABLE {schema}.saga_timers ADD COLUMN IF NOT EXISTS held_until timestamptz",
    "ALTER TABLE {schema}.saga_timers ADD COLUMN IF NOT EXISTS barrier jsonb",
    "CREATE INDEX IF NOT EXISTS saga_timers_next ON {schema}.saga_timers"
    " ((coalesce(held_until, due_at)))",
    # A saga's lock and its facts from a position, in one round trip. A function, because in
    # one plain SELECT the snapshot predates the lock: the facts of the writer it waited for
    # would be missed. Created once, never replaced: a process's role may not own one made
    # by another; a changed function gets a new name.
    """
    DO $do$ BEGIN
    IF to_regprocedure('{schema}.saga_lock_load_v1(bigint, text, integer)') IS NULL THEN
        CREATE FUNCTION {schema}.saga_lock_load_v1(lock_key bigint, saga text, from_seq integer)
        RETURNS TABLE (seq integer, kind text, event_id uuid, data jsonb, recorded_at timestamptz)
        LANGUAGE plpgsql VOLATILE AS $fn$
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key);
            RETURN QUERY SELECT e.seq, e.kind, e.event_id, e.data, e.recorded_at
                FROM {schema}.saga_events AS e
                WHERE e.order_id = saga AND e.seq >= from_seq ORDER BY e.seq;
        END $fn$;
    END IF;
    END $do$
    """,
    # Many sagas' locks, in the order given (sorted by the caller, so two such calls never
    # wait on each other crosswise), and their facts from a position each: a coordinator's
    # batch of messages locks and reads all its sagas in one round trip.
    """
    DO $do$ BEGIN
    IF to_regprocedure('{schema}.saga_lock_load_many_v1(bigint[], text[], integer[])') IS NULL
    THEN
        CREATE FUNCTION {schema}.saga_lock_load_many_v1(
            lock_keys bigint[], sagas text[], from_seqs integer[])
        RETURNS TABLE (saga text, seq integer, kind text, event_id uuid, data jsonb,
                       recorded_at timestamptz)
        LANGUAGE plpgsql VOLATILE AS $fn$
        DECLARE
            lock_key bigint;
        BEGIN
            FOREACH lock_key IN ARRAY lock_keys LOOP
                PERFORM pg_advisory_xact_lock(lock_key);
            END LOOP;
            RETURN QUERY SELECT e.order_id, e.seq, e.kind, e.event_id, e.data, e.recorded_at
                FROM unnest(sagas, from_seqs) AS w(key, from_seq)
                JOIN {schema}.saga_events AS e ON e.order_id = w.key AND e.seq >= w.from_seq
                ORDER BY e.order_id, e.seq;
        END $fn$;
    END IF;
    END $do$
    """,
)
"""The coordinator's tables; ``{schema}`` stands for its schema (``Database.migrate`` fills it).

``(order_id, seq)`` is unique: two writers appending the same position conflict, which is the
optimistic concurrency check of :meth:`SagaStore.append`.
"""


RECORD_MANY_SQL = (
    "WITH appended AS ("
    "INSERT INTO {schema}.saga_events"
    " (order_id, seq, kind, event_id, data, recorded_at)"
    " SELECT f.order_id, f.seq, f.kind, f.event_id, f.data::jsonb, f.recorded_at"
    " FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::uuid[], $6::text[],"
    " $7::timestamptz[]) AS f(order_id, base, seq, kind, event_id, data, recorded_at)"
    # Each saga's facts follow the position its first decision of the batch was made on.
    " WHERE (SELECT coalesce(max(e.seq), 0) FROM {schema}.saga_events AS e"
    " WHERE e.order_id = f.order_id) = f.base RETURNING 1),"
    " complete AS (SELECT count(*) = $8 AS ok FROM appended),"
    " cancelled AS (DELETE FROM {schema}.saga_timers AS t"
    " USING unnest($9::text[], $10::text[]) AS c(order_id, name)"
    " WHERE t.order_id = c.order_id AND t.name = c.name AND (SELECT ok FROM complete)),"
    " moved AS (INSERT INTO {schema}.saga_timers AS t"
    " (order_id, name, due_at, traceparent)"
    " SELECT m.order_id, m.name, m.due_at, m.traceparent"
    " FROM unnest($11::text[], $12::text[], $13::timestamptz[], $14::text[])"
    " AS m(order_id, name, due_at, traceparent)"
    " WHERE (SELECT ok FROM complete)"
    " ON CONFLICT (order_id, name) DO UPDATE"
    " SET due_at = EXCLUDED.due_at, traceparent = EXCLUDED.traceparent,"
    " held_until = CASE WHEN t.due_at = EXCLUDED.due_at THEN t.held_until END,"
    " barrier = CASE WHEN t.due_at = EXCLUDED.due_at THEN t.barrier END)"
    " SELECT count(*) FROM appended"
)
"""Many sagas' decisions in one statement (:meth:`PostgresSagaStore.record_many`): each
timer once (its last operation), so no row is changed twice."""

LOCK_LOAD_MANY_SQL = "SELECT * FROM {schema}.saga_lock_load_many_v1($1, $2, $3)"
"""Locks and facts of many sagas (:meth:`PostgresSagaStore.lock_and_load_many`)."""
