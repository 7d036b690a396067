"""`choreo sagas waiting | approve | reject`: the inbox of every saga type from the real read
models, and an answer built by the saga's own definition, published for the coordinator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from contracts.catalog import OrderRejected
from contracts.returns import ReturnApproved
from events.codec import Codec
from events.producer import EventProducer
from events.settings import Settings
from events.topics import topic_for
from tests.integration.kafka_helpers import read_records
from tests.integration.test_api import read_models_of
from tests.integration.test_api_auth import WAITING
from tests.integration.test_api_saga_answers import waiting_return
from tests.integration.test_cli_checks import _choreo, cli_on
from tests.integration.test_projector import flow, return_flow

pytestmark = pytest.mark.integration


@pytest.fixture
async def inbox(
    settings: Settings, codec: Codec, producer: EventProducer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Settings]:
    """``ord-wait`` and ``ret-wait`` waiting for a person (their requests, the catalog's
    examples, expired on 2025-03-14 and 2025-03-20), ``ret-used`` cancelled; the CLI set to
    these read models."""
    messages = waiting_return("ret-wait") + flow("ord-wait", WAITING) + return_flow("ret-used")
    async with read_models_of(settings, codec, producer, messages):
        with cli_on(settings, monkeypatch):
            yield settings


async def test_the_inbox_lists_every_type_soonest_to_expire_first(inbox: Settings):
    listed = await _choreo("sagas", "waiting", "--json")
    assert listed.exit_code == 0, listed.output
    answer = orjson.loads(listed.stdout)
    keys = [(w["saga"]["saga_type"], w["saga"]["saga_key"]) for w in answer["waiting"]]
    assert keys == [("order", "ord-wait"), ("return", "ret-wait")]
    assert answer["total"] == 2
    assert answer["waiting"][1]["amounts"][0] == {
        "name": "refund",
        "minor": 250_000,
        "currency": "EUR",
    }
    table = await _choreo("sagas", "waiting", "--type", "return")
    assert table.exit_code == 0, table.output
    assert "ret-wait" in table.stdout
    assert "ord-wait" not in table.stdout
    assert "2,500.00 EUR" in table.stdout
    assert "overdue" in table.stdout


async def test_answers_are_built_by_each_sagas_definition(inbox: Settings, codec: Codec):
    approved = await _choreo("sagas", "approve", "return", "ret-wait", "--by", "ann")
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.strip() == "approved return ret-wait (return.approved)"
    rejected = await _choreo(
        "sagas", "reject", "order", "ord-wait", "--by", "bob", "--reason", "too much"
    )
    assert rejected.exit_code == 0, rejected.output
    assert rejected.stdout.strip() == "rejected order ord-wait (order.rejected)"

    topics = [topic_for("return.approved", inbox), topic_for("order.rejected", inbox)]
    on_topics = [
        m
        for m in waiting_return("x") + flow("x", WAITING) + return_flow("x")
        if topic_for(m.envelope.event_type, inbox) in topics
    ]
    records = await read_records(inbox, sorted(set(topics)), count=len(on_topics) + 2)
    answers = {r.key: codec.decode(r.value) for r in records if r.key in (b"ret-wait", b"ord-wait")}
    ret, order = answers[b"ret-wait"], answers[b"ord-wait"]
    assert isinstance(ret.event, ReturnApproved)
    assert ret.event.approved_by == "ann"
    assert ret.envelope.saga_type == "return"
    assert isinstance(order.event, OrderRejected)
    assert (order.event.rejected_by, order.event.reason) == ("bob", "too much")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["approve", "return", "ret-used", "--by", "ann"],
         "return ret-used is cancelled: it waits for no one's answer"),
        (["approve", "return", "ret-nope", "--by", "ann"], "no return ret-nope"),
        (["approve", "trip", "t-1", "--by", "ann"], "no saga type 'trip'"),
        (["reject", "order", "ord-wait", "--by", "ann", "--reason", " "], "needs"),
    ],
)  # fmt: skip
async def test_what_cannot_be_answered_is_refused(inbox: Settings, args: list[str], words: str):
    result = await _choreo("sagas", *args)
    assert result.exit_code == 1
    assert words in result.output
