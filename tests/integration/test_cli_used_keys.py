"""`choreo sagas start --key` and `choreo orders place --order-id` refuse a key the read model
already has: the coordinator would ignore the start (same type) or dead-letter it (another
type), and the command used to print the key and exit 0 all the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from choreo.cli import app
from events.codec import Codec
from events.producer import EventProducer
from events.settings import Settings, get_settings
from tests.integration.test_api import read_models_of
from tests.integration.test_console_saga_page import return_flow

pytestmark = pytest.mark.integration


@pytest.fixture
async def projected(
    settings: Settings, codec: Codec, producer: EventProducer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Settings]:
    """``ret-used``, a cancelled return, in this test's read models; the CLI set to them."""
    async with read_models_of(settings, codec, producer, return_flow("ret-used")):
        monkeypatch.setenv("CHOREO_TOPIC_PREFIX", settings.topic_prefix)
        get_settings.cache_clear()
        try:
            yield settings
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
