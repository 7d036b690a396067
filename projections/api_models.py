"""The HTTP API's documents: what each endpoint answers, as pydantic models.

They are the API's contract (``/openapi.json``): each mirrors what
:class:`~projections.queries.Queries` returns, and every error has the one :class:`ErrorBody`
shape.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contracts.order import STATUSES
from events.model import as_utc
from projections.key_paths import KEY_TEXT
from projections.tokens import Principal


class ErrorField(BaseModel):
    """One invalid input of a request."""

    field: str = Field(description="Name of the parameter, e.g. `status` or `limit`.")
    location: str = Field(description="Where it was given: `path` or `query`.")
    message: str = Field(description="What is wrong with it.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="Machine-readable code: `not_found`, `invalid_request`, ...")
    detail: str = Field(description="Human-readable explanation.")
    fields: list[ErrorField] | None = Field(
        default=None, description="The invalid inputs (422 only)."
    )


class SagaStep(BaseModel):
    """One step or human task: its state and when and by which event it moved."""

    step: str
    kind: str = Field(description="`step` or `human task`.")
    critical: bool
    state: str = Field(
        description="pending, running, awaiting, succeeded, failed, timed_out, skipped "
        "(a task whose condition did not hold), abandoned (left open when the saga ended)."
    )
    on_path: bool = Field(description="Whether it counts in the progress.")
    triggered_at: datetime | None
    triggered_by: str | None
    started_at: datetime | None
    started_by: str | None
    finished_at: datetime | None
    finished_by: str | None
    reason: str | None
    detail: str | None


class Progress(BaseModel):
    """Finished steps of the steps this order goes through."""

    done: int
    expected: int


def _known_status(value: str) -> str:
    if value not in STATUSES:
        raise PydanticCustomError(
            "unknown_status",
            "Input should be one of: {expected}",
            {"expected": ", ".join(STATUSES)},
        )
    return value


PG_BIGINT_MAX = 2**63 - 1
"""The largest number PostgreSQL takes for a ``bigint`` (an ``OFFSET``): a count parameter's
bound, so that a larger one is the client's 422, not the database's refusal."""

STORABLE_TEXT = r"^[^\x00]*$"
"""A text parameter's pattern: no NUL (U+0000), which PostgreSQL cannot store."""

OrderId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        pattern=STORABLE_TEXT,
        description=f"e.g. `ord-1a2b3c4d5e6f`; {KEY_TEXT}",
    ),
]
"""The ``order_id`` path parameter of every order endpoint."""

_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _not_a_number(value: object) -> object:
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise PydanticCustomError(
            "iso_time", "Input should be an ISO 8601 time such as 2026-12-04T21:00:00Z"
        )
    return value


IsoTime = Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(as_utc)]
"""A time query parameter: ISO 8601, as the API's document says (pydantic alone would also
take a number as Unix seconds), UTC when it has no zone."""

StatusName = Annotated[
    str, AfterValidator(_known_status), WithJsonSchema({"type": "string", "enum": list(STATUSES)})
]
"""An order status: one of :data:`contracts.order.STATUSES`."""


class OrderStatus(BaseModel):
    """An order's state: its saga's row of the ``saga_status`` read model, or its state at a
    past time."""

    order_id: str
    status: StatusName
    cancel_reason: str | None = Field(description="Why a cancelled order was cancelled.")
    current_step: str | None = Field(description="The step in progress; null when finished.")
    timeline: list[SagaStep] = Field(description="Each step and human task, as for any saga.")
    progress: Progress
    compensations_done: list[str] = Field(description="Compensating commands acknowledged.")
    trace_id: str | None = Field(description="The order's trace (look it up in Jaeger).")
    customer_id: str | None
    total_minor: int | None = Field(description="Order total in minor units of `currency`.")
    currency: str | None
    placed_at: datetime | None = Field(description="When its `order.placed` occurred.")
    updated_at: datetime | None = Field(description="Time of the order's latest event.")
    event_count: int
    as_of: datetime | None = Field(
        default=None, description="Set when this is the state as of a past time (`?as_of=`)."
    )


class OrderList(BaseModel):
    """Orders, newest first."""

    orders: list[OrderStatus]
    count: int = Field(description="How many orders are in this response (at most `limit`).")
    total: int = Field(description="How many orders match the filters (for paging).")
    offset: int = Field(description="How many matching orders come before this page.")


class Approval(BaseModel):
    """An order waiting for a person's decision, with its approval request."""

    order: OrderStatus
    requested_at: datetime | None = Field(description="When the coordinator asked.")
    expires_at: datetime | None = Field(
        description="Unanswered by then, the approval times out (the order is rejected, or the "
        "saga escalates, as the coordinator is configured)."
    )
    threshold_minor: int | None = Field(description="The total at or above which a person asks.")


class Approvals(BaseModel):
    """Orders waiting for approval, the soonest to expire first."""

    approvals: list[Approval]
    count: int = Field(description="How many are in this response (at most `limit`).")
    total: int = Field(description="How many orders wait for approval.")


class HistoryEntry(BaseModel):
    """One event of an order's audit trail (summarized, without personal data)."""

    event_id: str
    event_type: str
    occurred_at: datetime
    producer: str
    summary: str
    caused_by: str | None = Field(description="event_id of the event that caused this one.")
    position: str = Field(description="Where it is in the log: `topic/partition@offset`.")


class OrderHistory(BaseModel):
    """Every event of one order, in log order."""

    order_id: str
    events: list[HistoryEntry]


class StepDuration(BaseModel):
    """Durations of one step over the latest 2,000 orders (milliseconds)."""

    count: int
    p50: float
    p95: float


class Summary(BaseModel):
    """Counts and rates over every order."""

    orders: int
    by_status: dict[str, int]
    by_cancel_reason: dict[str, int]
    step_duration_ms: dict[str, StepDuration]
    orders_per_minute: float = Field(description="Orders placed per minute over the window.")


class PartitionLag(BaseModel):
    """How far the projector is behind on one partition."""

    topic: str
    partition: int
    end_offset: int
    projected: int = Field(description="Next offset the projector will read.")
    lag: int


class ProjectionStatus(BaseModel):
    """Where the projector is."""

    projection: str
    events: int = Field(description="Events in the event log.")
    lag: list[PartitionLag]
    total_lag: int
    last_event_at: datetime | None
    events_per_second_1m: float


class Projections(BaseModel):
    """The projector's progress and what it projected."""

    status: ProjectionStatus
    summary: Summary


class Health(BaseModel):
    """Whether the API can answer: PostgreSQL reachable and the read models created."""

    status: str = Field(description="`ok` or `unavailable`.")
    database: bool = Field(description="PostgreSQL answers.")
    projections: bool = Field(description="The projector has created its tables.")
    version: str
    detail: str | None = Field(default=None, description="What is wrong, when not ok.")


class Breaker(BaseModel):
    """One process instance's circuit breaker of one provider, as the process published it."""

    process: str = Field(description="The process calling the provider, e.g. `payment`.")
    instance: str = Field(description="`host:pid` of the process instance.")
    provider: str = Field(description="`gateway`, `carrier`, `mailer` or `crm`.")
    state: str = Field(description="`closed`, `half_open` or `open`.")
    since: datetime = Field(description="When it entered that state.")
    failures: int = Field(description="Different messages failing in a row, within the window.")
    opened: int = Field(description="How often it opened since the process started.")
    deferred: int = Field(description="Messages that waited without calling the provider.")
    in_use: int = Field(description="Calls inside the provider's bulkhead now.")
    concurrency: int = Field(description="The bulkhead's limit.")
    fault_rate: float = Field(description="Injected failure rate in force (`choreo faults`).")
    last_error: str | None = Field(description="The last provider failure it counted.")
    updated_at: datetime = Field(description="When the process last published it.")
    stale: bool = Field(description="Not refreshed lately: its process died without stopping.")


class ApprovalRequest(BaseModel):
    """An approval: an optional note on why."""

    reason: str | None = Field(default=None, max_length=500, description="Why (optional).")


class RejectionRequest(BaseModel):
    """A rejection: why, always."""

    reason: str = Field(min_length=1, max_length=500, description="Why it is rejected.")


class DecisionAccepted(BaseModel):
    """A decision published: the saga resumes when the coordinator reads it."""

    order_id: str
    decision: str = Field(description="`approved` or `rejected`.")
    by: str = Field(description="The name of the token that decided.")
    event_id: str = Field(description="The published event's id (in the audit trail).")


class SagaDecisionAccepted(BaseModel):
    """An answer to a saga's human task published: it resumes when the coordinator reads it."""

    saga_type: str
    saga_key: str
    decision: str = Field(description="`approved` or `rejected`.")
    by: str = Field(description="The name of the token that decided.")
    event_type: str = Field(description="The published event's type (its definition's).")
    event_id: str = Field(description="The published event's id (in the audit trail).")


class DeadLetterInfo(BaseModel):
    """One dead letter: where it came from, why it failed, and whether it was redriven."""

    id: str = Field(description="`partition:offset` in the dead-letter topic.")
    consumer: str
    event_type: str | None
    order_id: str | None = Field(description="The original record's key.")
    attempts: int
    reason: str
    error_type: str
    source_topic: str
    dead_at: datetime
    redriven_at: datetime | None
    redriven_by: str | None


class DeadLetters(BaseModel):
    """Dead letters, oldest first."""

    dead_letters: list[DeadLetterInfo]
    count: int


class RedriveRequest(BaseModel):
    """Which dead letters to redrive: ``ids``, or every pending one with ``all``."""

    # The document says what the validator checks, so a client (or a fuzzer) reading it
    # does not send a body that can only be refused.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["ids"], "properties": {"ids": {"minItems": 1}}},
                {"required": ["all"], "properties": {"all": {"const": True}}},
            ]
        }
    )

    ids: list[str] = Field(default_factory=list, description="Ids from `GET /dead-letters`.")
    all: bool = Field(default=False, description="Redrive every pending dead letter.")

    @model_validator(mode="after")
    def _names_some(self) -> RedriveRequest:
        if not self.ids and not self.all:
            raise ValueError("name dead letter ids, or all")
        return self


class Redriven(BaseModel):
    """The dead letters redriven."""

    ids: list[str]
    by: str
    audit_id: int | None = Field(
        default=None, description="The redrive's row in the audit; null when nothing was redriven."
    )


class RedrivenLetter(BaseModel):
    """One letter of an audited redrive."""

    id: str = Field(description="`partition:offset` in the dead-letter topic.")
    event_type: str | None
    order_id: str | None
    source_topic: str
    consumer: str
    reason: str


class RedriveRecord(BaseModel):
    """One redrive: who, when, which letters."""

    id: int
    redriven_at: datetime
    redriven_by: str = Field(description="The name of the token that redrove.")
    token_id: str
    letters: list[RedrivenLetter]


class RedriveAuditList(BaseModel):
    """Redrives, newest first."""

    redrives: list[RedriveRecord]
    count: int


class Me(BaseModel):
    """Who the caller is."""

    name: str
    role: str
    token_id: str
    saga_types: list[str] | None = Field(
        default=None, description="An operator's scope: the saga types it answers (none: all)."
    )

    @classmethod
    def of(cls, caller: Principal) -> Me:
        scope = list(caller.saga_types) if caller.saga_types is not None else None
        return cls(name=caller.name, role=caller.role, token_id=caller.token_id, saga_types=scope)


class SignInRequest(BaseModel):
    """A sign-in: the token (never logged, never stored)."""

    token: str = Field(min_length=1, max_length=500)
