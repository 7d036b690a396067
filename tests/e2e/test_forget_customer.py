"""Forgetting a customer on the real platform (crypto-shredding): their e-mail address is at
rest nowhere in plain text (no table, no topic, no span, no log line) before and after
``choreo customers forget``, it reads as erased where it was used and where it is shown (the
console's audit trail, `choreo events tail`), and a rebuild of the read models still verifies.
A customer with events written before sealing is told so."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from choreo.client import new_order_id
from choreo.eventtools import make_codec, shown_event
from choreo.roles import as_process
from contracts.catalog import OrderPlaced
from contracts.samples import sample_order_placed
from events.database import schema_name
from events.errors import ChoreoError
from events.personal_data import ERASED, SHOWN, PostgresKeyring, keys_schema, open_value
from events.producer import publish_first
from events.security import kafka_options
from events.settings import Settings
from events.topics import all_topics, topic_for
from projections.api import create_app
from projections.rebuild import rebuild
from projections.traces import OrderTrace, fetch_order_trace
from services.email.store import PostgresEmailStore
from tests.conftest import ApiTokens
from tests.e2e.conftest import Deployment, start_deployment
from tests.integration.test_api import serve

pytestmark = pytest.mark.integration

TEXT_TYPES = {"text", "character varying", "jsonb", "json"}
QUOTE = "&#34;"
"""A double quote in the console's HTML."""


@pytest.fixture(scope="module")
async def deployment(stack: None) -> AsyncIterator[Deployment]:
    async for d in start_deployment({}, "forget"):
        yield d


def order_of(customer_id: str, email: str) -> OrderPlaced:
    sample = sample_order_placed(email=email)
    return OrderPlaced.model_validate({**sample.model_dump(), "customer_id": customer_id})


async def tables_holding(d: Deployment, text: str) -> list[str]:
    """Every column of the deployment's schemas (text, json, bytea and their arrays) whose
    value holds ``text`` somewhere, as ``schema.table.column``."""
    prefix = schema_name(d.settings, "")
    found: list[str] = []
    async with d.db.pool.acquire() as conn:
        columns = await conn.fetch(
            """SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.udt_name
               FROM information_schema.columns c JOIN information_schema.tables t
                 USING (table_schema, table_name)
               WHERE c.table_schema LIKE $1 AND t.table_type = 'BASE TABLE'""",
            prefix.replace("_", r"\_") + r"\_%",
        )
        assert columns, f"no tables under {prefix}_*"
        for col in columns:
            ref = f'"{col["table_schema"]}"."{col["table_name"]}"'
            name = f'"{col["column_name"]}"'
            if col["data_type"] in TEXT_TYPES:
                where = f"position($1 in {name}::text) > 0"
            elif col["data_type"] == "bytea":
                where = f"position(convert_to($1, 'UTF8') in {name}) > 0"
            elif col["udt_name"] == "_bytea":
                where = (
                    f"EXISTS (SELECT 1 FROM unnest({name}) v"
                    " WHERE position(convert_to($1, 'UTF8') in v) > 0)"
                )
            elif col["udt_name"] in ("_text", "_varchar"):
                where = f"position($1 in array_to_string({name}, ' ')) > 0"
            else:
                continue
            if await conn.fetchval(f"SELECT count(*) FROM {ref} WHERE {where}", text):
                found.append(f"{col['table_schema']}.{col['table_name']}.{col['column_name']}")
    return found


async def every_record(settings: Settings) -> list[ConsumerRecord]:
    """Every record of the deployment's topics (events and dead letters), from the start."""
    consumer = AIOKafkaConsumer(
        *all_topics(settings),
        **kafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment():  # without a group: every partition, once known
            assert time.monotonic() < deadline, "the topics' partitions are not known"
            await asyncio.sleep(0.1)
        parts = sorted(consumer.assignment())
        ends = await consumer.end_offsets(parts)
        records: list[ConsumerRecord] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            assert time.monotonic() < deadline, "the topics could not be read to their end"
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def records_holding(d: Deployment, text: str) -> list[str]:
    """The records whose bytes (value, key, headers) or decoded payload hold ``text``."""
    codec = make_codec(d.settings)
    found: list[str] = []
    for r in await every_record(d.settings):
        raw = [r.value or b"", r.key or b"", *(v for _, v in r.headers or ())]
        payload: dict[str, Any] = {}
        if r.topic != d.settings.dlq_topic:
            payload = codec.decode_with_payload(r.value)[1]
        if (
            any(text.encode() in part for part in raw)
            or text in orjson.dumps(payload, default=str).decode()
        ):
            found.append(f"{r.topic}:{r.partition}:{r.offset}")
    return found


async def trace_of(d: Deployment, order_id: str) -> OrderTrace:
    """The order's trace once the processes that open personal data have exported to it."""
    deadline = time.monotonic() + 30
    while True:
        try:
            found = await fetch_order_trace(d.settings, order_id)
            if {"email", "shipping", "projector"} <= found.services:
                return found
        except ChoreoError:
            pass
        assert time.monotonic() < deadline, f"no full trace of {order_id} in Jaeger"
        await asyncio.sleep(0.5)


def logs_holding(d: Deployment, text: str) -> list[str]:
    return [
        f"{path.name}: {line}"
        for path in sorted(Path(d.platform.log_dir).glob("*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if text in line
    ]


async def forget(settings: Settings, customer_id: str) -> tuple[int, dict[str, Any]]:
    """``choreo customers forget CUSTOMER --json`` against the deployment: exit code, output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "choreo", "customers", "forget", customer_id, "--json",
        env={**os.environ, "CHOREO_TOPIC_PREFIX": settings.topic_prefix},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    assert out, err.decode()
    return proc.returncode, orjson.loads(out)


async def console_audit(d: Deployment, tokens: ApiTokens, order_id: str) -> str:
    """The saga page's live part (its audit trail with each event's payload) of ``order_id``,
    from the API running as its own role over the deployment's read models."""
    async with serve(create_app(as_process(d.settings, "api"), tokens.api)) as console:
        signed = await console.post("/console/sign-in", data={"token": tokens.viewer})
        assert signed.status_code == 303, signed.text
        deadline = time.monotonic() + 30
        live = await console.get(f"/console/sagas/order/{order_id}/live")
        while live.status_code == 404 and time.monotonic() < deadline:  # not projected yet
            await asyncio.sleep(0.3)
            live = await console.get(f"/console/sagas/order/{order_id}/live")
    assert live.status_code == 200, live.text
    return live.text


async def tailed_order_placed(d: Deployment, order_id: str) -> dict[str, object]:
    """The order's ``order.placed`` as `choreo events tail` prints it (as the administrator)."""
    codec = make_codec(d.settings)
    orders = [
        codec.decode(r.value)
        for r in await every_record(d.settings)
        if r.key == order_id.encode() and r.topic == topic_for("order.placed", d.settings)
    ]
    [placed] = [m for m in orders if m.envelope.event_type == "order.placed"]
    conn = await asyncpg.connect(d.settings.database_url)
    try:
        return await shown_event(conn, d.settings, placed)
    finally:
        await conn.close()


async def assert_nowhere(d: Deployment, order_id: str, email: str) -> None:
    assert await tables_holding(d, email) == []
    assert await records_holding(d, email) == []
    spans = orjson.dumps([s.to_json() for s in (await trace_of(d, order_id)).spans]).decode()
    assert email not in spans
    assert logs_holding(d, email) == []


async def test_a_forgotten_customers_email_is_nowhere_and_the_read_models_still_verify(
    checked: Deployment, api_tokens: ApiTokens
):
    customer, email = f"cus-{uuid.uuid4().hex[:8]}", f"ada-{uuid.uuid4().hex[:8]}@example.com"
    order_id = (await checked.client.place_order(order_of(customer, email))).saga_key
    checked.orders.append(order_id)
    assert (await checked.wait_for(order_id)).status == "completed"
    async with checked.db.pool.acquire() as conn:
        emails = PostgresEmailStore(conn, schema_name(checked.settings, "email"))
        assert [m.template for m in await emails.sent(order_id)] == ["order_confirmation"]
        recipient = await emails.recipient(order_id)
    assert recipient is not None
    # Sealed at rest from the start: only the mailer saw the address, in memory.
    await assert_nowhere(checked, order_id, email)
    # Readers show the sealed values masked while the key exists ...
    assert f"{QUOTE}customer_email{QUOTE}: {QUOTE}***{QUOTE}" in await console_audit(
        checked, api_tokens, order_id
    )
    assert (await tailed_order_placed(checked, order_id))["customer_email"] == SHOWN

    code, done = await forget(checked.settings, customer)
    assert code == 0, done
    assert done["key_deleted"] is True
    assert done["log_checked"] is True
    assert done["plain_events"] == []

    await assert_nowhere(checked, order_id, email)
    async with checked.db.pool.acquire() as conn:
        keyring = PostgresKeyring(conn, keys_schema(checked.settings))
        assert await open_value(keyring, recipient.email, "customer_email") == ERASED
    # ... and as erased once it is gone.
    html = await console_audit(checked, api_tokens, order_id)
    assert f"{QUOTE}customer_email{QUOTE}: {QUOTE}{ERASED}{QUOTE}" in html
    assert f"{QUOTE}line1{QUOTE}: {QUOTE}{ERASED}{QUOTE}" in html
    tailed = await tailed_order_placed(checked, order_id)
    assert tailed["customer_email"] == ERASED
    assert tailed["customer_id"] == customer
    report = await rebuild(as_process(checked.settings, "projector"), verify=True)
    assert report.differences == []


async def test_forgetting_a_customer_with_events_from_before_sealing_says_so(
    checked: Deployment,
):
    customer, email = f"cus-{uuid.uuid4().hex[:8]}", f"old-{uuid.uuid4().hex[:8]}@example.com"
    # Published as producers did before sealing: personal fields in plain text.
    message = await publish_first(
        checked.client.producer, order_of(customer, email),
        saga_type="order", saga_key=new_order_id(), by="cli",
    )  # fmt: skip
    checked.orders.append(message.saga_key)
    assert (await checked.wait_for(message.saga_key)).status == "completed"
    # The probes of the first test see plain text where there is some.
    assert f"{schema_name(checked.settings, 'email')}.recipients.email" in await tables_holding(
        checked, email
    )
    assert await records_holding(checked, email)
    code, done = await forget(checked.settings, customer)
    assert code == 3, done
    assert done["key_deleted"] is False
    [plain] = done["plain_events"]
    assert plain["event_type"] == "order.placed"
    assert plain["saga_key"] == message.saga_key
    assert plain["event_id"] == str(message.envelope.event_id)
