"""A person's answer to an order waiting for approval, as the event it publishes.

The CLI (`choreo orders approve|reject`) and the HTTP API (`POST /orders/{id}/approve|reject`)
build the same events here, with the same rules: a decision names who took it, and a rejection
says why.
"""

from __future__ import annotations

from contracts.catalog import OrderApproved, OrderRejected
from events.errors import ChoreoError
from events.model import utc_now


def approval(*, by: str, reason: str | None = None) -> OrderApproved:
    """``order.approved`` by ``by`` (a person's name), now.

    Raises:
        ChoreoError: ``by`` is blank.
    """
    if not by.strip():
        raise ChoreoError("approve needs the approver's name (--by)")
    return OrderApproved(approved_by=by, reason=reason, approved_at=utc_now())


def rejection(*, by: str, reason: str) -> OrderRejected:
    """``order.rejected`` by ``by``, now, for ``reason``.

    Raises:
        ChoreoError: ``by`` or ``reason`` is blank.
    """
    if not by.strip() or not reason.strip():
        raise ChoreoError("reject needs the approver's name (--by) and a --reason")
    return OrderRejected(rejected_by=by, reason=reason, rejected_at=utc_now())
