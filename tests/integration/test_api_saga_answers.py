"""`POST /sagas/{type}/{key}/approve|reject`: a person answers the human task a saga of any
type waits on, with the event its definition builds (`return.approved` for a return), under
the token's name; the operator role only; 404, 409 and 422 as for an order's approval."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.return_samples import scenario_return
from contracts.returns import ReturnApproved, ReturnRejected
from contracts.samples import EXAMPLES
from events.codec import Codec
from events.model import Event, Message
from events.producer import EventProducer
from events.settings import Settings
from events.topics import topic_for
from projections.api import create_app
from tests.conftest import ApiTokens
from tests.integration.kafka_helpers import read_records
from tests.integration.test_api import read_models_of, serve
from tests.integration.test_projector import return_flow

pytestmark = pytest.mark.integration


def waiting_return(return_id: str) -> list[Message[Event]]:
    """A return over the approval threshold, waiting for a person."""
    requested = scenario_return("large", "ord-1")
    first: Message[Event] = Message.first(
        requested, saga_type="return", saga_key=return_id, producer="test"
    )
    return [first, first.caused(EXAMPLES["return.approval_requested"], producer="test")]


@pytest.fixture
async def returns(
    settings: Settings, codec: Codec, producer: EventProducer
) -> AsyncIterator[Settings]:
    """``ret-wait`` (waiting for approval), ``ret-wait2`` (too) and ``ret-used`` (cancelled)."""
    messages = waiting_return("ret-wait") + waiting_return("ret-wait2") + return_flow("ret-used")
    async with read_models_of(settings, codec, producer, messages):
        yield settings


async def test_an_operator_answers_a_returns_approval(
    returns: Settings, api_tokens: ApiTokens, codec: Codec
):
    async with serve(create_app(returns, api_tokens.api), api_tokens.operator) as api:
        status = (await api.get("/sagas/return/ret-wait")).json()
        assert status["status"] == "awaiting_approval", status
        response = await api.post("/sagas/return/ret-wait/approve", json={"reason": "regular"})
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["decision"] == "approved"
        assert accepted["by"] == "test-operator"
        assert accepted["event_type"] == "return.approved"
        response = await api.post("/sagas/return/ret-wait2/reject", json={"reason": "worn"})
        assert response.status_code == 202, response.text
        assert response.json()["event_type"] == "return.rejected"

    topic = topic_for("return.approved", returns)
    on_topic = [m for m in waiting_return("x") * 2 + return_flow("x")
                if topic_for(m.envelope.event_type, returns) == topic]  # fmt: skip
    records = await read_records(returns, [topic], count=len(on_topic) + 2)
    answers = {
        r.key: codec.decode(r.value)
        for r in records
        if codec.decode(r.value).envelope.producer == "api"
    }
    approved, rejected = answers[b"ret-wait"], answers[b"ret-wait2"]
    assert isinstance(approved.event, ReturnApproved)
    assert (approved.event.approved_by, approved.event.reason) == ("test-operator", "regular")
    assert approved.envelope.saga_type == "return"
    assert str(approved.envelope.event_id) == accepted["event_id"]
    assert isinstance(rejected.event, ReturnRejected)
    assert (rejected.event.rejected_by, rejected.event.reason) == ("test-operator", "worn")


async def test_what_cannot_be_answered_is_refused(returns: Settings, api_tokens: ApiTokens):
    async with serve(create_app(returns, api_tokens.api), api_tokens.operator) as api:
        response = await api.post("/sagas/return/ret-used/approve")
        assert response.status_code == 409
        assert response.json()["detail"] == (
            "return ret-used is cancelled: it waits for no one's answer"
        )
        response = await api.post("/sagas/return/ret-none/approve")
        assert response.status_code == 404
        assert response.json()["detail"] == "no return saga ret-none"
        response = await api.post("/sagas/return/ret-wait/reject", json={})
        assert response.status_code == 422
    async with serve(create_app(returns, api_tokens.api), api_tokens.viewer) as api:
        response = await api.post("/sagas/return/ret-wait/approve")
        assert response.status_code == 403
