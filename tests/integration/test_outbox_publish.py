"""Publishing the outbox right after commit, and the fence that keeps one key's messages in
order, on the real PostgreSQL and Kafka (:mod:`events.outbox`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from contracts.samples import sample_order_placed
from events.codec import Codec
from events.database import Database, schema_name
from events.model import Message
from events.outbox import OutboxRelay, Staged, outbox_size, stage
from events.producer import EventProducer, to_record
from events.settings import Settings
from events.topics import topic_for
from tests.integration.kafka_helpers import FailingOnce, read_records

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with Database(settings) as database:
        await database.migrate(schema_name(settings, "outbox"))
        yield database
        await database.pool.execute(
            f"DROP SCHEMA IF EXISTS {schema_name(settings, 'outbox')} CASCADE"
        )


class Staging:
    """Stages ``order.placed`` of given orders (saga keys) in one committed transaction each,
    as a delivery's commit leaves them."""

    def __init__(self, settings: Settings, codec: Codec, db: Database) -> None:
        self.settings = settings
        self.codec = codec
        self.db = db
        self.schema = schema_name(settings, "outbox")
        self.event_ids: dict[str, list[str]] = {}

    async def commit(self, *keys: str, published: Sequence[int] = ()) -> Staged:
        messages = [
            Message.first(sample_order_placed(), saga_type="order", saga_key=key, producer="test")
            for key in keys
        ]
        for m in messages:
            self.event_ids.setdefault(m.saga_key, []).append(str(m.envelope.event_id))
        async with self.db.pool.acquire() as conn, conn.transaction():
            return await stage(
                conn,
                self.schema,
                [to_record(m, self.codec, self.settings) for m in messages],
                published,
            )

    async def published(self, count: int) -> list[tuple[str, str]]:
        """The first ``count`` records on the order topic, as (saga key, event id)."""
        records = await read_records(
            self.settings, [topic_for("order.placed", self.settings)], count
        )
        decoded = [self.codec.decode(r.value) for r in records]
        return [(m.saga_key, str(m.envelope.event_id)) for m in decoded]


@pytest.fixture
def staging(settings: Settings, codec: Codec, db: Database) -> Staging:
    return Staging(settings, codec, db)


async def test_committed_rows_are_published_at_once_and_deleted_by_the_next_transaction(
    staging: Staging, db: Database, producer: EventProducer
):
    staged = await staging.commit("ord-1", "ord-2", "ord-3")
    assert (len(staged.ids), staged.behind) == (3, False)
    relay = OutboxRelay(db, staging.schema, producer)

    await relay.publish_committed(staged)

    assert (relay.published_after_commit, relay.left_to_relay) == (3, 0)
    published = await staging.published(3)
    assert sorted(published) == sorted((key, ids[0]) for key, ids in staging.event_ids.items())
    # Published, not yet deleted: the next transaction deletes them (here the relay's poll),
    # without publishing them again.
    assert relay.published_rows.ids() == list(staged.ids)
    assert await outbox_size(db, staging.schema) == 3
    assert await relay.flush() == 0
    assert (await outbox_size(db, staging.schema), relay.published_rows.ids()) == (0, [])
    assert relay.published == 3


async def test_rows_published_and_not_yet_deleted_fence_no_one(
    staging: Staging, db: Database, producer: EventProducer
):
    relay = OutboxRelay(db, staging.schema, producer)
    first = await staging.commit("ord-1")
    await relay.publish_committed(first)
    assert await outbox_size(db, staging.schema) == 1  # its delete waits for a transaction

    later = await staging.commit("ord-1", published=relay.published_rows.ids())
    unknown = await staging.commit("ord-1")  # without knowing the row was published

    assert (later.behind, unknown.behind) == (False, True)


async def test_a_transaction_that_rolls_back_hands_its_deletes_to_the_next(
    staging: Staging, db: Database, producer: EventProducer
):
    relay = OutboxRelay(db, staging.schema, producer)
    staged = await staging.commit("ord-1", "ord-2")
    await relay.publish_committed(staged)

    async def failing_delivery() -> None:
        with relay.published_rows.claim() as gone:
            assert relay.published_rows.ids() == list(staged.ids)  # claimed, still known
            async with db.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    f"DELETE FROM {staging.schema}.outbox WHERE id = ANY($1::bigint[])", gone
                )
                raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await failing_delivery()

    assert await outbox_size(db, staging.schema) == 2
    assert sorted(relay.published_rows.ids()) == sorted(staged.ids)
    assert await relay.flush() == 0  # deletes them, publishes nothing twice
    assert await outbox_size(db, staging.schema) == 0
    assert relay.published == 2


async def test_rows_behind_an_older_row_of_their_key_go_to_the_relay_which_keeps_the_order(
    staging: Staging, db: Database, producer: EventProducer
):
    # ord-1's first message was committed but never published (a crash in between).
    await staging.commit("ord-1")
    behind = await staging.commit("ord-1", "ord-2")
    clear = await staging.commit("ord-3")
    assert (behind.behind, clear.behind) == (True, False)
    relay = OutboxRelay(db, staging.schema, producer)

    await relay.publish_committed(behind)
    await relay.publish_committed(clear)

    assert (relay.left_to_relay, relay.published_after_commit) == (1, 1)
    # ord-1 twice, ord-2, and ord-3 (published, its delete waiting for a transaction)
    assert await outbox_size(db, staging.schema) == 4
    assert await relay.flush() == 3
    published = await staging.published(4)
    ord_1 = [event_id for key, event_id in published if key == "ord-1"]
    assert ord_1 == staging.event_ids["ord-1"]  # in the order they were staged
    assert sorted(key for key, _ in published) == ["ord-1", "ord-1", "ord-2", "ord-3"]


async def test_a_failed_publish_leaves_the_rows_to_the_relay_and_fences_their_keys(
    staging: Staging, db: Database, producer: EventProducer
):
    failing = FailingOnce(producer)
    relay = OutboxRelay(db, staging.schema, failing)  # type: ignore[arg-type]

    await relay.publish_committed(await staging.commit("ord-away"))

    assert (failing.failures, relay.left_to_relay, relay.published) == (1, 1, 0)
    assert await outbox_size(db, staging.schema) == 1
    later = await staging.commit("ord-away")
    assert later.behind  # its key's first message still waits
    await relay.publish_committed(later)
    assert relay.published == 0
    assert await relay.flush() == 2
    published = await staging.published(2)
    assert [event_id for _, event_id in published] == staging.event_ids["ord-away"]


async def test_a_poll_nothing_woke_takes_only_rows_an_earlier_poll_saw(
    staging: Staging, db: Database, producer: EventProducer
):
    relay = OutboxRelay(db, staging.schema, producer)
    await staging.commit("ord-old")
    assert await relay.flush(everything=False) == 1  # the first poll takes everything
    await staging.commit("ord-new")  # its delivery may be publishing it right now

    assert await relay.flush(everything=False) == 0
    assert await relay.flush(everything=False) == 1  # still there a poll later: left over
    assert await outbox_size(db, staging.schema) == 0
