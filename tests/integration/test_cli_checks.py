"""What the CLI checks in the read models before it publishes, where the coordinator would
ignore or dead-letter the message while the command printed success and exited 0: a start
under a key a saga has already (`sagas start --key`, `orders place --order-id`), an answer
to a saga that waits for none or does not exist (`orders approve`, `returns approve`), a
return of an order that does not exist (`returns request`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from choreo.cli import app
from events.codec import Codec
from events.producer import EventProducer
from events.settings import Settings, get_settings
from events.topics import all_topics
from tests.integration.test_api import read_models_of
from tests.integration.test_api_auth import WAITING
from tests.integration.test_projector import flow, return_flow

pytestmark = pytest.mark.integration


@pytest.fixture
async def projected(
    settings: Settings, codec: Codec, producer: EventProducer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Settings]:
    """``ret-used``, a cancelled return, and ``ord-wait``, an order waiting for approval, in
    this test's read models; the CLI set to them."""
    messages = return_flow("ret-used") + flow("ord-wait", WAITING)
    async with read_models_of(settings, codec, producer, messages):
        with cli_on(settings, monkeypatch):
            yield settings


@contextlib.contextmanager
def cli_on(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's commands set to the deployment of ``settings`` meanwhile."""
    monkeypatch.setenv("CHOREO_TOPIC_PREFIX", settings.topic_prefix)
    # No tracer or meter provider set in the test session by the commands' traced_cli().
    monkeypatch.setenv("CHOREO_TRACING_ENABLED", "false")
    monkeypatch.setenv("CHOREO_METRICS_ENABLED", "false")
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()


async def _choreo(*args: str) -> Result:
    """The CLI in a thread (its commands run their own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env={"COLUMNS": "300"})


async def test_a_used_key_is_refused_and_a_new_one_starts(projected: Settings, tmp_path: Path):
    example = await _choreo("sagas", "start", "return", "--example")
    assert example.exit_code == 0, example.output
    file = tmp_path / "return.json"
    file.write_text(example.stdout)

    again = await _choreo("sagas", "start", "return", "--file", str(file), "--key", "ret-used")
    assert again.exit_code == 1
    assert "ret-used is the key of a return saga already (cancelled)" in again.output
    assert "the coordinator would ignore this start" in again.output

    other = await _choreo("orders", "place", "--sample", "happy", "--order-id", "ret-used")
    assert other.exit_code == 1
    assert "the coordinator would dead-letter this start" in other.output

    fresh = await _choreo("sagas", "start", "return", "--file", str(file), "--key", "ret-new")
    assert fresh.exit_code == 0, fresh.output
    assert fresh.stdout.strip() == "ret-new"
    # --json: the start event published, its personal data concealed as the log keeps it.
    start = "sagas", "start", "return", "--file", str(file), "--key", "ret-json", "--json"
    started = orjson.loads((await _choreo(*start)).stdout)
    assert (started["envelope"]["saga_key"], started["envelope"]["event_type"]) == (
        "ret-json", "return.requested",
    )  # fmt: skip
    assert started["event"]["customer_email"] != orjson.loads(example.stdout)["customer_email"]


async def test_topics_create_lists_what_it_created(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with cli_on(settings, monkeypatch):  # a prefix of its own: none of its topics exist yet
        created = await _choreo("topics", "create", "--json")
        again = await _choreo("topics", "create", "--json")
    assert created.exit_code == 0, created.output
    assert set(orjson.loads(created.stdout)) == set(all_topics(settings))
    assert orjson.loads(again.stdout) == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["orders", "approve", "ord-nope", "--by", "ann"], "error: no order ord-nope"),
        (["orders", "reject", "ord-nope", "--by", "ann", "--reason", "no"], "no order ord-nope"),
        (["returns", "approve", "ret-used", "--by", "ann"],
         "error: return ret-used is cancelled: it waits for no one's answer"),
        (["returns", "request", "ord-nope"], "error: no order ord-nope"),
    ],
)  # fmt: skip
async def test_an_answer_nobody_waits_for_is_refused(
    projected: Settings, args: list[str], words: str
):
    result = await _choreo(*args)
    assert result.exit_code == 1
    assert words in result.output


async def test_an_order_that_waits_is_answered(projected: Settings):
    result = await _choreo("orders", "approve", "ord-wait", "--by", "ann")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "approved ord-wait"
