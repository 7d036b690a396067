"""Dead letters through the client: listed with their reason, shown, redriven, marked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from choreo.client import ChoreoClient
from contracts.catalog import CATALOG, OrderPlaced
from contracts.samples import sample_order_placed
from events.codec import Codec
from events.consumer import EventConsumer
from events.delivery import DirectDelivery
from events.errors import PermanentError
from events.model import Message
from events.producer import EventProducer
from events.router import Router
from events.settings import Settings
from tests.integration.kafka_helpers import eventually

pytestmark = pytest.mark.integration


async def test_a_dead_letter_is_listed_redriven_and_then_handled(
    settings: Settings, codec: Codec, producer: EventProducer
):
    broken = True
    handled: list[str] = []
    router: Router[None] = Router("redrive", CATALOG)

    @router.on(OrderPlaced)
    async def handle(message: Message[OrderPlaced], context: None) -> list[Any]:
        if broken:
            raise PermanentError("the handler has a bug")
        handled.append(message.saga_key)
        return []

    consumer = EventConsumer(
        name="redrive",
        group_id=f"{settings.topic_prefix}redrive",
        router=router,
        delivery=DirectDelivery(producer, None, "t"),
        codec=codec,
        producer=producer,
        settings=settings,
    )
    await producer.publish(
        [Message.first(sample_order_placed(), saga_type="order", saga_key="ord-dl", producer="t")]
    )
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: consumer.stats.dead_lettered == 1, what="the dead letter")
        async with ChoreoClient(settings) as client:
            pending = await client.dead_letters()
            assert len(pending) == 1
            letter = pending[0].letter
            assert letter.reason == "the handler has a bug"
            assert letter.event_type == "order.placed"
            broken = False  # "the bug is fixed"
            await client.redrive([pending[0].id])
            await eventually(lambda: handled == ["ord-dl"], what="the redriven message")
            assert await client.dead_letters() == []
            redriven = await client.dead_letters(include_redriven=True)
            assert [e.id for e in redriven] == [pending[0].id]
            assert redriven[0].redriven_at is not None
            with pytest.raises(Exception, match="no pending dead letter"):
                await client.redrive([pending[0].id])
    finally:
        await consumer.stop()
        await task
