"""Email's part in the returns saga: confirm the refund of a return to the customer, once.

Registered on the email router (:data:`services.email.handlers.router`); the service definition
imports this module so the process runs them. Messages of a return are keyed by the return id
(``message.saga_key``), and the store keeps the return's recipient and mails under it as it keeps
an order's under the order id. As with the order confirmation, a mail that bounces or keeps
failing is dead-lettered and the give-up hook emits ``email.failed``. The address is personal
data: stored, handed to the mailer, never logged or emitted.
"""

from __future__ import annotations

import logging

from contracts.returns import PaymentReturnRefunded, ReturnRequested
from events.model import Event, Message
from services.email.context import EmailContext
from services.email.handlers import RETURN_CONFIRMATION, failed, router, send_once
from services.email.store import Recipient

log = logging.getLogger("choreo.email")

__all__ = ["router"]


@router.on(ReturnRequested)
async def remember_return_recipient(
    message: Message[ReturnRequested], ctx: EmailContext
) -> list[Event]:
    """Keep who gets the return's mail (the request names no one to greet)."""
    await ctx.store.save_recipient(Recipient(message.saga_key, message.event.customer_email, None))
    return []


async def return_confirmation_failed(
    message: Message[PaymentReturnRefunded], error: BaseException, ctx: EmailContext
) -> list[Event]:
    """Give-up hook: the return's confirmation could not be sent."""
    log.warning("return %s: gave up on %s: %s", message.saga_key, RETURN_CONFIRMATION, error)
    return failed(RETURN_CONFIRMATION, error)


@router.on(PaymentReturnRefunded, on_give_up=return_confirmation_failed, provider="mailer")
async def send_return_confirmation(
    message: Message[PaymentReturnRefunded], ctx: EmailContext
) -> list[Event]:
    """Tell the customer the return is refunded."""
    refund = message.event
    amount = f"{refund.amount_minor / 100:.2f} {refund.currency}"
    detail = f"We refunded {amount} to your original payment."
    return await send_once(
        message.saga_key, RETURN_CONFIRMATION, detail, ctx, awaited="return.requested"
    )
