"""An operator token scoped to some saga types (`choreo tokens create --role operator
--saga-type return`): it answers those types' human tasks, is refused any other's and the
redrive of dead letters (403), and the console offers it the answers it may give only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from events.codec import Codec
from events.producer import EventProducer
from events.settings import Settings
from projections.api import create_app
from projections.tokens import ApiSettings, new_token
from tests.conftest import ApiTokens
from tests.integration.test_api import read_models_of, serve
from tests.integration.test_api_audit import send_letter
from tests.integration.test_api_auth import WAITING
from tests.integration.test_api_saga_answers import waiting_return
from tests.integration.test_projector import flow

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def returns_operator(api_tokens: ApiTokens) -> tuple[str, ApiSettings]:
    """A token of ``ann``, an operator of returns only, and API settings accepting it."""
    token, record = new_token("ann", "operator", ["return"])
    return token, api_tokens.api.model_copy(update={"tokens": [*api_tokens.api.tokens, record]})


@pytest.fixture
async def waiting(
    settings: Settings, codec: Codec, producer: EventProducer
) -> AsyncIterator[Settings]:
    """``ret-wait`` and ``ord-wait``, each waiting for a person, and a dead letter."""
    await send_letter(settings, codec, producer, "ord-letter")
    async with read_models_of(settings, codec, producer, waiting_return("ret-wait")
                              + flow("ord-wait", WAITING)):  # fmt: skip
        yield settings


async def test_a_scoped_operator_answers_its_types_only(
    waiting: Settings, returns_operator: tuple[str, ApiSettings]
):
    token, api = returns_operator
    async with serve(create_app(waiting, api), token) as client:
        me = (await client.get("/auth/me")).json()
        assert (me["role"], me["saga_types"]) == ("operator", ["return"])
        refused = await client.post("/orders/ord-wait/approve")
        assert refused.status_code == 403
        assert refused.json()["detail"] == "ann may answer sagas of return, not order"
        assert (await client.post("/sagas/order/ord-wait/approve")).status_code == 403
        redrive = await client.post("/dead-letters/redrive", json={"all": True})
        assert redrive.status_code == 403
        assert "needs an operator of every saga type" in redrive.json()["detail"]
        answered = await client.post("/sagas/return/ret-wait/approve", json={"reason": "ok"})
        assert answered.status_code == 202, answered.text
        assert answered.json()["by"] == "ann"


async def test_the_console_offers_a_scoped_operator_its_answers_only(
    waiting: Settings, returns_operator: tuple[str, ApiSettings], api_tokens: ApiTokens
):
    token, api = returns_operator
    async with serve(create_app(waiting, api)) as client:
        signed = await client.post("/console/sign-in", data={"token": token})
        assert signed.status_code == 303, signed.text
        page = (await client.get("/console/approvals")).text
        ret = page[page.index('data-saga-key="ret-wait"') :]
        order = page[page.index('data-saga-key="ord-wait"') :]
        assert 'data-action="approve" data-saga-type="return"' in ret.split("</tr>")[0]
        assert 'data-testid="out-of-scope"' in order.split("</tr>")[0]
        assert 'data-action="approve"' not in order.split("</tr>")[0]
        assert 'data-testid="scope">return<' in page
        saga = (await client.get("/console/sagas/order/ord-wait")).text
        assert 'data-testid="decision"' not in saga
        letters = (await client.get("/console/dead-letters")).text
        assert "ord-letter" in letters  # listed, without the redrive an operator of all has
        assert "data-redrive" not in letters
    async with serve(create_app(waiting, api)) as client:
        signed = await client.post("/console/sign-in", data={"token": api_tokens.operator})
        assert signed.status_code == 303, signed.text
        assert "data-redrive" in (await client.get("/console/dead-letters")).text
