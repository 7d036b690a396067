"""The dead-letters page: what failed and why, the message itself, redriving, and the audit.

Letters come from the dead-letter topic (:meth:`~projections.operations.Operations.dead_letters`,
read at most every few seconds), newest first, filtered by source topic and by a word of the
reason; each shows its reason and error, and its original message decoded with the catalog's
schemas (envelope and payload, personal data masked as in the logs, a forgotten customer's
sealed values erased) or, when it does not decode, why not and its bytes in hex. Operators
redrive one letter or the ones they tick, through ``POST /dead-letters/redrive``, which records
each redrive in the audit shown below the list (:mod:`projections.audit`).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from events.errors import ContractError, StackError
from events.personal_data import forgotten_customers, keys_schema
from events.redrive import DeadLetterEntry
from projections.audit import RedriveAudit
from projections.backend import AuditDep, OperationsDep
from projections.console.pages import SignedIn, page
from projections.letters import decode, shown
from projections.operations import Operations

SHOWN = 200
"""At most this many letters are listed (the newest that match)."""

log = logging.getLogger("choreo.api")
router = APIRouter(include_in_schema=False)


def letter_view(entry: DeadLetterEntry, message: dict[str, Any]) -> dict[str, Any]:
    """One letter as the page shows it, with its original ``message`` as
    :func:`~projections.letters.shown` shows it."""
    letter = entry.letter
    return {
        "id": entry.id,
        "consumer": letter.consumer,
        "event_type": letter.event_type,
        "order_id": letter.order_id,
        "attempts": letter.attempts,
        "reason": letter.reason,
        "error_type": letter.error_type,
        "source_topic": letter.source_topic,
        "dead_at": letter.dead_at.isoformat(),
        "redriven_at": entry.redriven_at.isoformat() if entry.redriven_at else None,
        "redriven_by": entry.redriven_by,
        "message": message,
    }


async def letter_views(
    entries: list[DeadLetterEntry], operations: Operations, audit: RedriveAudit
) -> list[dict[str, Any]]:
    """The letters as the page shows them: one query for which of their customers were
    forgotten."""
    values = [e.letter.original_value for e in entries]
    decodings = [decode(operations.codec, v) for v in values]
    payloads = [d[1] for d in decodings if not isinstance(d, ContractError)]
    schema = keys_schema(operations.settings)
    forgotten = await forgotten_customers(audit.db.pool, schema, payloads)
    return [
        letter_view(e, shown(d, v, forgotten))
        for e, d, v in zip(entries, decodings, values, strict=True)
    ]


def matching(
    entries: list[DeadLetterEntry], *, topic: str | None, reason: str | None, redriven: bool
) -> list[DeadLetterEntry]:
    """The letters the filters keep, newest first: of ``topic``, with ``reason`` (any case)
    in their reason or error type, pending only unless ``redriven``."""
    words = (reason or "").strip().lower()
    return [
        e
        for e in reversed(entries)
        if (redriven or e.redriven_at is None)
        and (not topic or e.letter.source_topic == topic)
        and (not words or words in f"{e.letter.reason} {e.letter.error_type}".lower())
    ]


async def _dead_letters(
    operations: OperationsDep,
    audit: AuditDep,
    topic: Annotated[str | None, Query(max_length=300)] = None,
    reason: Annotated[str | None, Query(max_length=300)] = None,
    redriven: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    filters = {"topic": topic or "", "reason": reason or "", "redriven": redriven}
    try:
        entries = await operations.dead_letters(include_redriven=True)
        problem = None
    except (KafkaError, OSError, StackError, TimeoutError) as exc:
        log.warning("console: dead letters unavailable: %s", exc)
        entries, problem = [], f"The dead-letter topic cannot be read: {exc}"
    kept = matching(entries, topic=topic, reason=reason, redriven=redriven)
    return {
        "letters": await letter_views(kept[:SHOWN], operations, audit),
        "matched": len(kept),
        "pending": sum(1 for e in entries if e.redriven_at is None),
        "topics": sorted({e.letter.source_topic for e in entries}),
        "filters": filters,
        "query": {k: v for k, v in filters.items() if v},
        "problem": problem,
        "redrives": await audit.recent(limit=20),
    }


DeadLetters = Annotated[dict[str, Any], Depends(_dead_letters)]


@router.get("/console/dead-letters")
async def dead_letters_page(request: Request, user: SignedIn, data: DeadLetters) -> HTMLResponse:
    """Dead letters and the redrive audit, filtered, live."""
    return page(request, "dead_letters.html", user, section="dead-letters", **data)


@router.get("/console/dead-letters/live")
async def dead_letters_live(request: Request, user: SignedIn, data: DeadLetters) -> HTMLResponse:
    """The dead-letters page's changing part."""
    return page(request, "_dead_letters.html", user, **data)
