"""`choreo returns`: ask to return items of an order, and answer a return's approval.

The returns saga (:mod:`sagas.returns`) runs on the same coordinator as orders; these commands
only publish its events. Follow a return with `choreo sagas status return RETURN_ID`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from choreo.cli.common import (
    choreo_client,
    command_group,
    fail,
    fail_invalid,
    json_object,
    out,
    print_published,
    publish_traced,
    refuse_a_used_key,
    refuse_an_unknown_saga,
    waiting_for_an_answer,
)
from contracts.return_samples import RETURN_SCENARIOS, scenario_return
from contracts.returns import ReturnRequested
from events.errors import ChoreoError
from events.model import Event, Message
from sagas.returns import approval

app = command_group("Return items of an order (the returns saga).")

SAGA_TYPE = "return"


def _publish(call: str, key: str | None, event: Event) -> Message[Event]:
    """Start a return (``call`` "start") or answer its approval ("answer"), after checking
    what the read models say about it."""
    parent = None
    if call == "start" and key is not None:
        refuse_a_used_key(SAGA_TYPE, key)
    elif call == "answer":
        assert key is not None
        parent = waiting_for_an_answer(SAGA_TYPE, key, ReturnRequested.event_type)

    async def publish() -> Message[Event]:
        async with choreo_client() as client:
            if call == "start":
                return await client.start_saga(SAGA_TYPE, event, key)
            assert key is not None
            return await client.answer(SAGA_TYPE, key, event, trace_parent=parent)

    return publish_traced(publish)


@app.command("request")
def returns_request(
    order_id: Annotated[str, typer.Argument(help="The order whose items come back.")],
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="return.requested fields as JSON.")
    ] = None,
    sample: Annotated[
        str, typer.Option(help="A sample return: " + ", ".join(RETURN_SCENARIOS))
    ] = "happy",
    return_id: Annotated[
        str | None,
        typer.Option(help="Return id (default: generated); one a saga has already is refused."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the requested event.")] = False,
) -> None:
    """Publish `return.requested` for ORDER_ID and print the return id.

    The return is `--file return.json` (the fields of return.requested; `order_id` is set from
    the argument) or a `--sample` (default `happy`: one mug back, refunded without approval).
    """
    try:
        if file is not None:
            fields = json_object(file) | {"order_id": order_id}
            requested = ReturnRequested.model_validate(fields)
        else:
            requested = scenario_return(sample, order_id)
    except (ValueError, KeyError, OSError) as exc:  # pydantic's and JSON's errors are ValueErrors
        fail_invalid("return", exc)
    refuse_an_unknown_saga("order", order_id)
    message = _publish("start", return_id, requested)
    print_published(message, as_json)


@app.command("approve")
def returns_approve(
    return_id: Annotated[str, typer.Argument(help="The return waiting for approval.")],
    by: Annotated[str, typer.Option("--by", help="Who approves.")],
    reason: Annotated[str | None, typer.Option(help="Why (optional).")] = None,
) -> None:
    """Approve a return that waits for approval (publishes `return.approved`)."""
    if not by.strip():
        fail(ChoreoError("approve needs the approver's name (--by)"))
    _publish("answer", return_id, _answer(True, by, reason))
    out.print(f"approved {return_id}")


@app.command("reject")
def returns_reject(
    return_id: Annotated[str, typer.Argument(help="The return waiting for approval.")],
    by: Annotated[str, typer.Option("--by", help="Who rejects.")],
    reason: Annotated[str, typer.Option(help="Why.")],
) -> None:
    """Reject a return that waits for approval (publishes `return.rejected`)."""
    if not by.strip() or not reason.strip():
        fail(ChoreoError("reject needs the approver's name (--by) and a --reason"))
    _publish("answer", return_id, _answer(False, by, reason))
    out.print(f"rejected {return_id}")


def _answer(approve: bool, by: str, reason: str | None) -> Event:
    """The answer's event as the returns saga's definition builds it (the API's too)."""
    assert approval.answer is not None  # the returns definition gives one
    return approval.answer(approve, by, reason)
