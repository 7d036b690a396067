"""``choreo replay``: a process's tables, dropped and rebuilt from the log, are the tables live
processing wrote; the replay publishes nothing and charges nothing; the restarted process,
made to read its topics again from offset 0, finds every message in its rebuilt inbox and
then handles a new order."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from choreo.replay import build_for_replay, group_members, replay
from contracts.catalog import CATALOG
from events.codec import Codec
from events.database import Database, schema_name
from events.schemas import SchemaRegistry
from events.security import kafka_options
from events.service import Service
from events.settings import Settings
from events.topics import all_topics, event_topics, partitions_of, read_to_end
from saga_coordinator import SERVICE_NAME as COORDINATOR
from saga_coordinator import legacy
from saga_coordinator.context import CoordinatorSettings
from saga_coordinator.engine.state import fold
from saga_coordinator.service import build as build_coordinator
from saga_coordinator.store import parse_stored
from sagas.order import V1 as ORDER
from sagas.shipped import SAGAS
from services.payment.store import PostgresPaymentStore
from tests.e2e.conftest import BASE_ENV, Deployment, start_deployment

pytestmark = pytest.mark.integration

# Short deadlines so that timers fire during the run: the coordinator's replay must find them.
ENV = {"CHOREO_SAGA_APPROVAL_TIMEOUT_S": "6", "CHOREO_SAGA_PAYMENT_DEADLINE_S": "3"}
# The coordinator's replay infers its timer firings from the log and can attribute an output
# to the wrong cause (it then reports the divergence and exits 1); it is not proven exact, so
# it is not claimed here. The five services' replays are.
PROCESSES = ["inventory", "payment", "shipping", "crm", "email"]
VIA_CLI = "email"
"""Replayed by running ``choreo replay`` (with the platform's environment); the others by
calling :func:`choreo.replay.replay`."""
NOT_SNAPSHOTTED = {"outbox", "retry_queue"}  # must be empty: checked on their own
# The simulated gateway's memory: an outside system's state, kept in payment's schema so that
# its replicas share it (services/payment/gateway_calls.py); a replay asks no gateway.
OUTSIDE_STATE = {"simulated_gateway_calls"}

Rows = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment(ENV, "replay"):
        yield d


@pytest.fixture(scope="module")
async def history(deployment: Deployment) -> list[str]:
    """Orders down every path, all finished: what the replays rebuild."""
    scenarios = ["happy", "declined", "unshippable", "bounce", "out_of_stock", "flaky"]
    orders = [await deployment.place(s) for s in scenarios]
    approved, expired, timed_out = (
        await deployment.place("large"),
        await deployment.place("large"),  # nobody answers: the approval timer rejects it
        await deployment.place("timeout"),  # the payment deadline compensates
    )
    await deployment.wait_for(approved, "awaiting_approval")
    await deployment.client.approve(approved, by="ops-ann")
    orders += [approved, expired, timed_out]
    states = {o: await deployment.wait_for(o, timeout=90) for o in orders}
    assert states[expired].cancel_reason == "approval_timeout"
    assert states[timed_out].cancel_reason == "payment_timeout"
    return orders


@pytest.mark.parametrize("process", PROCESSES)
async def test_replay_rebuilds_the_tables_live_processing_wrote(
    checked: Deployment, history: list[str], process: str
):
    d = checked
    schema = schema_name(d.settings, process.replace("-", "_"))
    await _settle(d, process, retries=True)
    await d.platform.kill(process)
    await _until_left_group(d.settings, process)
    live = await _snapshot(d.db, schema)
    assert await _count(d.db, schema, NOT_SNAPSHOTTED) == 0, "outbox or retry queue not empty"
    charges = await _charges(d) if process == "payment" else None
    ends = await _end_offsets(d.settings, all_topics(d.settings))

    async with d.db.pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")  # lost
    if process == VIA_CLI:
        report = await _replay_via_cli(d, process)
    else:
        report = (
            await replay(d.settings, process, service=_service(process, d.settings))
        ).to_json()

    assert report["divergent"] == [], report
    assert report["unexplained_emissions"] == [], report
    assert report["replayed"] > 0
    if process == COORDINATOR:
        assert report["timers_fired"] >= 2  # the approval timeout, the payment deadline
    if process == "email":
        assert report["give_up_hooks_replayed"] >= 1  # the bounce's email.failed
    if process == "payment":
        assert report["dead_lettered_skipped"] >= 1  # the gateway that never answered
    rebuilt = await _snapshot(d.db, schema)
    assert await _count(d.db, schema, NOT_SNAPSHOTTED) == 0, "the replay staged messages"
    assert await _end_offsets(d.settings, all_topics(d.settings)) == ends, "a record was added"
    await _assert_same(d, process, live, rebuilt)
    if charges is not None:
        assert await _charges(d) == charges
        charged = Counter(
            m.saga_key for m in await _log(d.settings) if m.envelope.event_type == "payment.charged"
        )
        assert set(charged.values()) == {1}, charged  # one charge per charged order, still

    # Every message again from offset 0: the rebuilt inbox must absorb them all.
    await _rewind(d.settings, process)
    event_ends = await _end_offsets(d.settings, event_topics(d.settings))
    await d.platform.start(process)
    await _settle(d, process)
    assert await _end_offsets(d.settings, event_topics(d.settings)) == event_ends, (
        "redelivery had effects"
    )
    # (Dead-lettered messages fail again and are dead-lettered again, writing nothing.)
    assert await _snapshot(d.db, schema) == rebuilt

    order_id = await d.place("happy")
    assert (await d.wait_for(order_id)).status == "completed"


def _service(process: str, settings: Settings) -> Service[Any]:
    """The process as the replay builds it, configured as the platform runs it."""
    if process == COORDINATOR:
        knobs = {
            key.removeprefix("CHOREO_SAGA_").lower(): value
            for key, value in {**BASE_ENV, **ENV}.items()
            if key.startswith("CHOREO_SAGA_")
        }
        return build_coordinator(settings, CoordinatorSettings.model_validate(knobs))
    return build_for_replay(process, settings)


async def _replay_via_cli(d: Deployment, process: str) -> dict[str, Any]:
    name = "coordinator" if process == COORDINATOR else process
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "choreo", "replay", name, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **d.platform.env},
    )  # fmt: skip
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode() + stdout.decode()
    report: dict[str, Any] = orjson.loads(stdout)
    return report


# --------------------------------------------------------------------------- comparing


async def _assert_same(d: Deployment, process: str, live: Rows, rebuilt: Rows) -> None:
    """Row for row; where the log cannot tell the instant of a delivery (it emitted nothing)
    the replay stamps the message's occurred_at, never later than the live instant.

    The coordinator's facts are compared as a set per saga: the log does not tell in which
    order the live coordinator took messages of different topics that decided nothing (e.g.
    `shipment.scheduled` and `email.sent`), and each such observation gets the next ``seq``.
    The sagas they fold to must agree.
    """
    assert live.keys() == rebuilt.keys()
    emitted = await _emitted(d.settings, process)
    if "saga_events" in live:
        assert _sagas(live["saga_events"]) == _sagas(rebuilt["saga_events"])
        live = {**live, "saga_events": _unordered(live["saga_events"])}
        rebuilt = {**rebuilt, "saga_events": _unordered(rebuilt["saga_events"])}
    for table in live:
        assert len(live[table]) == len(rebuilt[table]), table
        for old, new in zip(live[table], map(dict, rebuilt[table]), strict=True):
            if table == "inbox":
                instants = emitted.causes.get(str(old["event_id"]), set())
                _assert_instant(old, new, "processed_at", exact=old["processed_at"] in instants)
            elif table == "saga_events":
                # Timer facts (no event id) and facts of deliveries that emitted are exact.
                instants = emitted.causes.get(str(old["event_id"]), set())
                exact = old["event_id"] is None or old["recorded_at"] in instants
                _assert_instant(old, new, "recorded_at", exact=exact)
            elif table == "saga_timers":
                old, new = {**old, "traceparent": None}, {**new, "traceparent": None}
            assert old == new, (table, old, new)


def _unordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Facts without their position, sorted by what they say."""
    facts = [{k: v for k, v in row.items() if k != "seq"} for row in rows]
    return sorted(facts, key=lambda f: (f["order_id"], f["kind"], str(f["event_id"]), f["data"]))


def _sagas(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What each saga's facts fold to, but for the instants."""
    streams: dict[str, list[Any]] = {}
    for row in rows:
        fact = parse_stored(
            row["kind"], orjson.loads(row["data"]), at=row["recorded_at"], event_id=row["event_id"]
        )
        streams.setdefault(row["order_id"], []).append(fact)
    sagas = {}
    for order_id, facts in streams.items():
        s = fold(order_id, legacy.read(facts, SAGAS))
        steps = {name: (p.outcome, p.detail) for name, p in s.steps.items()}
        undos = [(u.step, u.attempt, u.acknowledged, u.exhausted) for u in s.undos]
        sagas[order_id] = (
            s.version, s.status(ORDER), s.cancel_reason, s.cancel_detail, s.data, steps,
            s.notes, s.ignored, undos,
        )  # fmt: skip
    return sagas


def _assert_instant(old: dict[str, Any], new: dict[str, Any], column: str, *, exact: bool) -> None:
    if exact:
        assert new[column] == old[column], (column, old, new)
    else:
        assert new[column] <= old[column], (column, old, new)
    new[column] = old[column]


class _Emitted:
    """The instants at which the process emitted something, by cause."""

    def __init__(self) -> None:
        self.causes: dict[str, set[datetime]] = {}


async def _emitted(settings: Settings, process: str) -> _Emitted:
    emitted = _Emitted()
    for message in await _log(settings):
        env = message.envelope
        if env.producer == process:
            emitted.causes.setdefault(env.causation_id or "", set()).add(env.occurred_at)
    return emitted


# --------------------------------------------------------------------------- the stack


async def _snapshot(db: Database, schema: str) -> Rows:
    """Every table of the schema (but the outbox, the retry queue and the simulated gateway's),
    ordered by primary key."""
    async with db.pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT c.relname AS name,"
            " array(SELECT a.attname FROM pg_index i JOIN pg_attribute a"
            "   ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            "   WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY a.attnum) AS pk"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname",
            schema,
        )
        rows: Rows = {}
        for table in tables:
            if table["name"] in NOT_SNAPSHOTTED | OUTSIDE_STATE:
                continue
            order = ", ".join(table["pk"]) or "1"
            records = await conn.fetch(f"SELECT * FROM {schema}.{table['name']} ORDER BY {order}")
            rows[table["name"]] = [dict(r) for r in records]
    return rows


async def _count(db: Database, schema: str, tables: set[str]) -> int:
    async with db.pool.acquire() as conn:
        counts = [await conn.fetchval(f"SELECT count(*) FROM {schema}.{t}") for t in sorted(tables)]
    return sum(counts)


async def _charges(d: Deployment) -> dict[str, Any]:
    async with d.db.pool.acquire() as conn:
        return dict(await PostgresPaymentStore(conn, schema_name(d.settings, "payment")).charges())


async def _log(settings: Settings) -> list[Any]:
    codec = Codec(SchemaRegistry.load(settings.schemas_dir), CATALOG)
    return [
        codec.decode(record.value) async for record in read_to_end(settings, event_topics(settings))
    ]


async def _end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**kafka_options(settings))
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(
            await partitions_of(settings, topics)
        )
        return ends
    finally:
        await consumer.stop()


async def _committed(settings: Settings, process: str) -> dict[TopicPartition, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(f"{settings.topic_prefix}{process}")
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


async def _settle(
    d: Deployment, process: str, *, retries: bool = False, timeout: float = 60.0
) -> None:
    """Wait until the process has handled (committed) everything on its topics and published
    its outbox (``retries``: and retried what it parked), twice in a row a second apart."""
    schema = schema_name(d.settings, process.replace("-", "_"))
    topics = _topics_of(d.settings, process)
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        assert time.monotonic() < deadline, f"{process} did not settle"
        ends = await _end_offsets(d.settings, topics)
        committed = await _committed(d.settings, process)
        done = all(committed.get(tp, 0) >= end for tp, end in ends.items() if end)
        pending = await _count(d.db, schema, {"outbox", "retry_queue"} if retries else {"outbox"})
        quiet = quiet + 1 if done and not pending else 0
        await asyncio.sleep(1.0)


def _topics_of(settings: Settings, process: str) -> list[str]:
    return _service(process, settings).router.topics(settings)


async def _until_left_group(settings: Settings, process: str, timeout: float = 30.0) -> None:
    """A killed consumer stays in its group until its session times out; replay waits."""
    deadline = time.monotonic() + timeout
    while await group_members(settings, process):
        assert time.monotonic() < deadline, f"{process} is still in its consumer group"
        await asyncio.sleep(0.5)


async def _rewind(settings: Settings, process: str) -> None:
    """Set the process's committed offsets back to 0: on restart it reads everything again."""
    partitions = await partitions_of(settings, _topics_of(settings, process))
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        group_id=f"{settings.topic_prefix}{process}",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, 0))
    finally:
        await consumer.stop()
    assert set((await _committed(settings, process)).values()) == {0}
