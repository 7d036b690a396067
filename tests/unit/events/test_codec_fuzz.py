"""The decoder fuzzed: whatever bytes arrive, it answers with a message or its own typed error.

The codec may raise only :class:`~events.errors.ContractError` (DecodeError, UnknownSchemaError,
ValidationError) with a reason, never a driver's or the interpreter's error (IndexError,
struct.error, UnicodeDecodeError, OverflowError, TypeError ...), and never hangs (Hypothesis'
deadline). Whatever it accepts round-trips. The dispatcher dead-letters a record whose value is
not what its ``event_type`` header says. Sizes come from the Hypothesis profile (tests/conftest.py:
bounded in `make test`; ``--hypothesis-profile=fuzz`` for a long run).
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st

from contracts.catalog import CATALOG, OrderPlaced
from contracts.samples import EXAMPLES
from events.codec import MAGIC, Codec
from events.dispatch import ConsumerStats, Dispatcher
from events.dlq import DeadLetter, DeadLetterSink, letter_for
from events.errors import ContractError, DecodeError
from events.model import Event, Message
from events.router import Router
from events.schemas import SchemaRegistry
from tests.strategies import (
    bit_flipped,
    foreign_fingerprint,
    schema_valid_frames,
    truncated,
    valid_messages,
)


def decodes_or_refuses(codec: Codec, data: bytes) -> Message[Event] | ContractError:
    """Decode ``data``: the message, or the codec's error, which must give a reason. Anything
    else raised fails the test (that is the bug the fuzzing looks for)."""
    refused: ContractError | None = None
    try:
        message = codec.decode(data)
    except ContractError as exc:
        refused = exc
    if refused is not None:
        assert str(refused).strip(), f"{type(refused).__name__} without a reason"
        return refused
    assert codec.decode(codec.encode(message)) == message  # what it accepts round-trips
    return message


@given(message=valid_messages())
def test_valid_messages_round_trip(codec: Codec, message: Message[Event]):
    assert codec.decode(codec.encode(message)) == message


@given(data=st.binary(max_size=256))
def test_arbitrary_bytes_are_refused_with_a_decode_error(codec: Codec, data: bytes):
    assert isinstance(decodes_or_refuses(codec, data), DecodeError)


@given(body=st.binary(max_size=256))
def test_arbitrary_bytes_behind_the_marker_are_refused(codec: Codec, body: bytes):
    assert isinstance(decodes_or_refuses(codec, MAGIC + body), DecodeError)


@given(data=st.data())
def test_arbitrary_bodies_behind_a_known_fingerprint_are_refused(
    codec: Codec, registry: SchemaRegistry, data: st.DataObject
):
    writer = data.draw(st.sampled_from(registry.event_types).map(registry.latest))
    body = data.draw(st.binary(max_size=256))
    # Random bytes never make a valid envelope (its uuid and timestamp, its types' names).
    assert isinstance(decodes_or_refuses(codec, MAGIC + writer.fingerprint + body), ContractError)


@given(data=st.data())
def test_truncated_frames_are_a_decode_error(codec: Codec, data: st.DataObject):
    # Avro reads deterministically: a prefix of a record runs out of bytes wherever it ends.
    assert isinstance(decodes_or_refuses(codec, data.draw(truncated(codec))), DecodeError)


@given(data=st.data())
def test_bit_flips_are_refused_or_decode_to_a_valid_message(codec: Codec, data: st.DataObject):
    decodes_or_refuses(codec, data.draw(bit_flipped(codec)))


@given(data=st.data())
def test_a_frame_with_another_schemas_fingerprint_is_refused_or_consistent(
    codec: Codec, registry: SchemaRegistry, data: st.DataObject
):
    value = data.draw(foreign_fingerprint(codec, registry))
    outcome = decodes_or_refuses(codec, value)
    if isinstance(outcome, Message):  # only if the body happens to fit the other schema
        writer = registry.by_fingerprint(value[2:10])
        assert outcome.envelope.event_type == writer.event_type


@given(data=st.data())
def test_schema_valid_records_with_arbitrary_fields_decode_or_are_refused(
    codec: Codec, registry: SchemaRegistry, data: st.DataObject
):
    decodes_or_refuses(codec, data.draw(schema_valid_frames(registry)))


# --------------------------------------------------------------------------- the dispatcher


def consumed(value: bytes, event_type: str) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t.order", partition=0, offset=7, timestamp=0, timestamp_type=0, key=b"ord-1",
        value=value, checksum=None, serialized_key_size=-1, serialized_value_size=len(value),
        headers=(("event_type", event_type.encode()),),
    )  # fmt: skip


class Letters(DeadLetterSink):
    """Keeps the dead letters instead of producing them."""

    def __init__(self) -> None:
        super().__init__("test", "test", producer=cast(Any, None), topic="dlq")
        self.letters: list[DeadLetter] = []

    async def send(
        self, record: ConsumerRecord, error: BaseException, *, attempts: int, **kwargs: Any
    ) -> DeadLetter:
        letter = letter_for(record, error, consumer=self.consumer, attempts=attempts, **kwargs)
        self.letters.append(letter)
        return letter


def dispatcher(codec: Codec) -> tuple[Dispatcher, Letters]:
    router: Router[None] = Router("test", CATALOG)

    @router.on(OrderPlaced)
    async def placed(message: Message[OrderPlaced], context: None) -> list[Event]:
        return []

    letters = Letters()
    return Dispatcher(router, codec, letters, ConsumerStats()), letters


@pytest.mark.parametrize("actual", sorted(set(EXAMPLES) - {"order.placed"}))
async def test_a_value_of_another_type_than_its_header_says_is_dead_lettered(
    codec: Codec, actual: str
):
    # The header routes the record to the order.placed handler; the value is another event.
    value = codec.encode(
        Message.first(EXAMPLES[actual], saga_type="order", saga_key="ord-1", producer="test")
    )
    dispatch, letters = dispatcher(codec)
    assert await dispatch.prepare(consumed(value, "order.placed"), attempt=1) is None
    [letter] = letters.letters
    assert letter.error_type == "HeaderMismatchError"
    assert f"header event_type 'order.placed' but the value is {actual!r}" in letter.reason
    assert dispatch.stats.dead_lettered == 1


async def test_a_value_that_matches_its_header_is_routed(codec: Codec):
    value = codec.encode(
        Message.first(EXAMPLES["order.placed"], saga_type="order", saga_key="ord-1", producer="t")
    )
    dispatch, letters = dispatcher(codec)
    pending = await dispatch.prepare(consumed(value, "order.placed"), attempt=1)
    assert pending is not None
    assert pending.handler.event_type == "order.placed"
    assert letters.letters == []


@given(data=st.data())
async def test_the_dispatcher_dead_letters_every_damaged_value_with_a_reason(
    codec: Codec, registry: SchemaRegistry, data: st.DataObject
):
    value = data.draw(
        st.one_of(st.binary(max_size=128), truncated(codec), foreign_fingerprint(codec, registry))
    )
    dispatch, letters = dispatcher(codec)
    pending = await dispatch.prepare(consumed(value, "order.placed"), attempt=1)
    if pending is None:
        [letter] = letters.letters
        assert letter.reason
        assert letter.original_value == value
    else:  # a foreign fingerprint whose body happened to fit an order.placed schema
        assert pending.message.envelope.event_type == "order.placed"
