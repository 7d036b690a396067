"""The HTTP API fuzzed against its own OpenAPI document with Schemathesis, in process (ASGI),
over read models the real projector built on the real database and broker.

Every operation of ``/openapi.json`` gets generated requests (valid and invalid parameters and
bodies) twice: without credentials, where every secured operation must answer 401 and none
500, and as an operator, where Schemathesis' checks hold (no 5xx, documented status codes and
content types, bodies that match the response schemas, invalid input refused with a 4xx).
The number of examples per operation follows the Hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import schemathesis
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from events.codec import Codec
from events.producer import EventProducer
from events.settings import Settings
from projections.api import create_app
from tests.conftest import ApiTokens
from tests.integration.test_api import read_models_of
from tests.integration.test_projector import HAPPY, flow

pytestmark = pytest.mark.integration

WAITING = ["order.placed", "inventory.reserved", "order.approval_requested"]
# An API call costs milliseconds; a fraction of the profile's examples per operation keeps the
# bounded run at seconds.
EXAMPLES = max(5, hypothesis_settings.default.max_examples // 15)
OPEN = {("GET", "/health"), ("POST", "/auth/session"), ("DELETE", "/auth/session")}
"""Operations that need no credentials."""


@pytest.fixture
async def read_models(
    settings: Settings, codec: Codec, producer: EventProducer
) -> AsyncIterator[Settings]:
    """Read models with ``ord-wait`` (awaiting approval) and ``ord-done`` (completed)."""
    messages = flow("ord-wait", WAITING) + flow("ord-done", HAPPY)
    async with read_models_of(settings, codec, producer, messages):
        yield settings


@pytest.fixture
def api_schema(read_models: Settings, api_tokens: ApiTokens) -> Iterator[BaseSchema]:
    """The API's own OpenAPI document, its operations called in process."""
    app = create_app(read_models, api_tokens.api)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    # Schemathesis keeps the app's lifespan (its database pool) running until the process
    # exits; end it with the test.
    shutdown_lifespans()


def fuzz(
    schema: BaseSchema, call: Callable[[Case], None], headers: dict[str, str] | None = None
) -> list[str]:
    """Run ``call`` on generated cases of every operation, valid and invalid ones, sending
    ``headers`` unchanged in each; the operations tried. Schemathesis' own pytest plugin is not
    used: its lazy loading breaks on pytest 9 (it reads a private attribute of test items)."""
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()
        cases = st.one_of(
            [
                operation.as_strategy(mode, headers=headers)
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            ]
        )

        @given(case=cases)
        @hypothesis_settings(max_examples=EXAMPLES)
        def run(case: Case) -> None:
            call(case)

        run()
        tried.append(f"{operation.method.upper()} {operation.path}")
    return tried


def unparsable_body(response: Response) -> bool:
    """Whether the API refused the body before it looked at the credentials: FastAPI reads the
    body (not UTF-8: 400; not JSON: 422 ``json_invalid``) before it solves the dependencies."""
    if response.status_code == 400:
        return True
    fields = response.json().get("fields", []) if response.status_code == 422 else []
    return any(f["location"] == "body" and f["message"] == "JSON decode error" for f in fields)


CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def test_without_credentials_every_secured_operation_answers_401(api_schema: BaseSchema):
    def call(case: Case) -> None:
        response = case.call()
        case.validate_response(response, checks=CONFORMANCE)
        if (case.method, case.path) in OPEN or unparsable_body(response):
            return
        assert response.status_code == 401, (case.method, case.path, response.text)
        assert response.json()["error"] == "unauthorized"

    tried = await asyncio.to_thread(fuzz, api_schema, call)
    assert {"GET /orders/{order_id}", "POST /dead-letters/redrive"} <= set(tried)


async def test_an_operator_gets_answers_that_conform_to_the_document(
    api_schema: BaseSchema, api_tokens: ApiTokens
):
    operator = {"Authorization": f"Bearer {api_tokens.operator}"}
    statuses: Counter[int] = Counter()

    def call(case: Case) -> None:
        response = case.call_and_validate(headers=operator)
        if (case.method, case.path) not in OPEN:  # a sign-in with a generated token is a 401
            statuses[response.status_code] += 1

    tried = await asyncio.to_thread(fuzz, api_schema, call, operator)
    assert len(tried) >= 12
    assert statuses[200] > 0
    assert statuses[401] == 0, "the operator's token was not sent"
