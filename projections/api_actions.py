"""The API's endpoints that act or concern the caller: approvals (an order's, or any saga's
human task), dead letters, sessions.

Reading dead letters needs ``viewer``; approving, rejecting and redriving need ``operator``
(:mod:`projections.access`). The work itself is :class:`~projections.operations.Operations`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from events.redrive import DeadLetterEntry
from projections.access import (
    Operator,
    Viewer,
    authenticate,
    may_answer,
    may_redrive,
    sign_in,
    sign_out,
    token_store,
)
from projections.api_models import (
    ApprovalRequest,
    DeadLetterInfo,
    DeadLetters,
    DecisionAccepted,
    ErrorBody,
    Me,
    OrderId,
    Redriven,
    RedriveRequest,
    RejectionRequest,
    SagaDecisionAccepted,
    SignInRequest,
)
from projections.api_sagas import SagaKey, SagaType
from projections.backend import AuditDep, OperationsDep, QueriesDep
from projections.key_paths import keyed
from projections.operations import Conflict, NotFound, Operations
from projections.queries import ORDER_TYPE, Queries


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "The body is not UTF-8 text (read before the credentials are checked).",
        401: "No valid token or session.",
        403: "The token's role may not do this.",
        404: "No such order, saga or dead letter.",
        409: "The order or saga waits for no answer.",
        422: "A parameter is invalid.",
        503: "PostgreSQL or Kafka unavailable.",
    }
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


router = APIRouter()


@contextlib.contextmanager
def _http_errors() -> Iterator[None]:
    """What :class:`Operations` refuses, as HTTP: no such thing 404, a conflicting state 409."""
    try:
        yield
    except NotFound as exc:
        raise HTTPException(HTTPStatus.NOT_FOUND, str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(HTTPStatus.CONFLICT, str(exc)) from exc


@router.post(
    keyed("/orders/{order_id}/approve"),
    status_code=HTTPStatus.ACCEPTED,
    responses=_errors(400, 401, 403, 404, 409, 422, 503),
)
async def approve_order(
    request: Request,
    order_id: OrderId,
    caller: Operator,
    operations: OperationsDep,
    queries: QueriesDep,
    body: ApprovalRequest | None = None,
) -> DecisionAccepted:
    """Approve an order that waits for approval (operator). The decision is recorded under the
    token's name and joins the order's trace; the saga resumes when the coordinator reads it.
    The same as `POST /sagas/order/{order_id}/approve`, answered as the order's."""
    may_answer(caller, ORDER_TYPE)
    reason = body.reason if body else None
    saga = (ORDER_TYPE, order_id)
    return _as_order(await _answer(request, operations, queries, saga, caller.name, reason))


@router.post(
    keyed("/orders/{order_id}/reject"),
    status_code=HTTPStatus.ACCEPTED,
    responses=_errors(400, 401, 403, 404, 409, 422, 503),
)
async def reject_order(
    request: Request,
    order_id: OrderId,
    body: RejectionRequest,
    caller: Operator,
    operations: OperationsDep,
    queries: QueriesDep,
) -> DecisionAccepted:
    """Reject an order that waits for approval, with a reason (operator): it is compensated.
    The same as `POST /sagas/order/{order_id}/reject`, answered as the order's."""
    may_answer(caller, ORDER_TYPE)
    saga = (ORDER_TYPE, order_id)
    return _as_order(
        await _answer(request, operations, queries, saga, caller.name, body.reason, no=True)
    )


def _as_order(answered: SagaDecisionAccepted) -> DecisionAccepted:
    """A saga's answer as the order endpoints have always told it."""
    return DecisionAccepted(
        order_id=answered.saga_key,
        decision=answered.decision,
        by=answered.by,
        event_id=answered.event_id,
    )


@router.post(
    keyed("/sagas/{saga_type}/{saga_key}/approve"),
    status_code=HTTPStatus.ACCEPTED,
    responses=_errors(400, 401, 403, 404, 409, 422, 503),
    tags=["sagas"],
)
async def approve_saga(
    request: Request,
    saga_type: SagaType,
    saga_key: SagaKey,
    caller: Operator,
    operations: OperationsDep,
    queries: QueriesDep,
    body: ApprovalRequest | None = None,
) -> SagaDecisionAccepted:
    """Approve the human task a saga of any type waits on (operator): the event is the one
    its definition builds (`order.approved`, `return.approved`), recorded under the token's
    name, in the saga's trace."""
    may_answer(caller, saga_type)
    reason = body.reason if body else None
    return await _answer(request, operations, queries, (saga_type, saga_key), caller.name, reason)


@router.post(
    keyed("/sagas/{saga_type}/{saga_key}/reject"),
    status_code=HTTPStatus.ACCEPTED,
    responses=_errors(400, 401, 403, 404, 409, 422, 503),
    tags=["sagas"],
)
async def reject_saga(
    request: Request,
    saga_type: SagaType,
    saga_key: SagaKey,
    body: RejectionRequest,
    caller: Operator,
    operations: OperationsDep,
    queries: QueriesDep,
) -> SagaDecisionAccepted:
    """Reject the human task a saga of any type waits on, with a reason (operator): the saga
    is compensated as its definition says."""
    may_answer(caller, saga_type)
    saga = (saga_type, saga_key)
    return await _answer(request, operations, queries, saga, caller.name, body.reason, no=True)


async def _answer(
    request: Request,
    operations: Operations,
    queries: Queries,
    saga: tuple[str, str],
    by: str,
    reason: str | None,
    *,
    no: bool = False,
) -> SagaDecisionAccepted:
    with _http_errors():
        message = await operations.answer(
            queries, request.app.state.definitions, saga, approve=not no, by=by, reason=reason
        )
    return SagaDecisionAccepted(
        saga_type=saga[0],
        saga_key=saga[1],
        decision="rejected" if no else "approved",
        by=by,
        event_type=message.envelope.event_type,
        event_id=str(message.envelope.event_id),
    )


def dead_letter_info(entry: DeadLetterEntry) -> DeadLetterInfo:
    """The API's view of a dead letter (without the original bytes)."""
    letter = entry.letter
    return DeadLetterInfo(
        id=entry.id,
        consumer=letter.consumer,
        event_type=letter.event_type,
        order_id=letter.order_id,
        attempts=letter.attempts,
        reason=letter.reason,
        error_type=letter.error_type,
        source_topic=letter.source_topic,
        dead_at=letter.dead_at,
        redriven_at=entry.redriven_at,
        redriven_by=entry.redriven_by,
    )


@router.get("/dead-letters", responses=_errors(401, 422, 503))
async def list_dead_letters(
    _: Viewer,
    operations: OperationsDep,
    include_redriven: Annotated[
        bool, Query(description="Include the dead letters already redriven.")
    ] = False,
) -> DeadLetters:
    """Dead letters, oldest first: where each came from and why it failed."""
    entries = await operations.dead_letters(include_redriven=include_redriven)
    return DeadLetters(dead_letters=[dead_letter_info(e) for e in entries], count=len(entries))


@router.post("/dead-letters/redrive", responses=_errors(400, 401, 403, 404, 422, 503))
async def redrive_dead_letters(
    body: RedriveRequest, caller: Operator, operations: OperationsDep, audit: AuditDep
) -> Redriven:
    """Publish dead-lettered messages again, unchanged, to their source topics (operator);
    each redrive is marked in the dead-letter topic with the token's name and recorded in the
    redrive audit (``GET /dead-letters/redrives``). Not for an operator scoped to some saga
    types: a dead letter's saga type is not known before it is redriven."""
    may_redrive(caller)
    with _http_errors():
        done = await operations.redrive(body.ids, every_pending=body.all, by=caller.name)
    audited = await audit.record(caller, done) if done else None
    return Redriven(
        ids=[e.id for e in done], by=caller.name, audit_id=audited["id"] if audited else None
    )


@router.get("/auth/me", responses=_errors(401))
async def me(caller: Viewer) -> Me:
    """Who the caller is: the token's name and role."""
    return Me.of(caller)


@router.post("/auth/session", responses=_errors(400, 401, 422))
async def start_session(request: Request, body: SignInRequest) -> Me:
    """Sign in with a token: sets the session cookie the console uses."""
    found = await authenticate(token_store(request), body.token)
    if found is None:
        raise HTTPException(
            HTTPStatus.UNAUTHORIZED, "invalid or revoked token", {"WWW-Authenticate": "Bearer"}
        )
    sign_in(request, found)
    return Me.of(found)


@router.delete("/auth/session", status_code=HTTPStatus.NO_CONTENT)
async def end_session(request: Request) -> None:
    """Sign out: ends the console session."""
    sign_out(request)
