"""`choreo chaos` refuses to start when nothing of the platform consumes its topic prefix:
without it the run placed its orders, waited out the quiet timeout and failed every
invariant (with faults that need no local process, such as `broker`, nothing checked first)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from choreo.cli import app
from events.security import kafka_options
from events.settings import Settings
from tests.integration.test_cli_checks import cli_on

pytestmark = pytest.mark.integration

# No fault that touches the shared stack, and a short wait, should the run start after all.
ARGS = ["chaos", "--orders", "5", "--faults", "malformed", "--quiet-timeout", "1"]
ARGS += ["--no-verify-projections", "--json"]


async def test_a_run_with_no_platform_consuming_is_refused(
    settings: Settings, topics: list[str], monkeypatch: pytest.MonkeyPatch
):
    # One process of the platform is up (its consumer group has a member): only the others
    # are named.
    inventory = AIOKafkaConsumer(
        topics[0], **kafka_options(settings), group_id=f"{settings.topic_prefix}inventory"
    )
    await inventory.start()
    try:
        await inventory.getmany(timeout_ms=3000)  # joined its group by now
        with cli_on(settings, monkeypatch):
            result = await asyncio.to_thread(CliRunner().invoke, app, ARGS, env={"COLUMNS": "300"})
    finally:
        await inventory.stop()
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    prefix = settings.topic_prefix
    assert f"nothing consumes topic prefix '{prefix}' as payment, shipping," in message
    assert "saga-coordinator, projector" in message
    assert "inventory" not in message
    assert "start the platform with `choreo run`" in message
