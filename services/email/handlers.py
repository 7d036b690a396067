"""Email handlers: remember the recipient, send the confirmation and the cancellation notice.

Each template is sent at most once per order: the store is checked first, the mailer gets
``<order id>:<template>`` as idempotency key, and the table keeps one row per (order,
template). When the runtime gives up on a mail (a bounce, or transient failures past the
retry budget) the give-up hooks emit ``email.failed``.

The recipient's address and name arrive sealed (:mod:`events.personal_data`) and are kept
sealed; they are opened only to send. A mail to a customer who was forgotten meanwhile is not
sent: the handler emits ``email.failed`` (permanent, reason :data:`ERASED_REASON`) at once, so
the order saga notes it, as it notes a bounce, and nothing is dead-lettered.
"""

from __future__ import annotations

import logging

from contracts.catalog import (
    CATALOG,
    EmailFailed,
    EmailSent,
    EmailTemplate,
    OrderCancelled,
    OrderPlaced,
    ShipmentScheduled,
)
from events.errors import NotReadyError, PermanentError
from events.model import Event, Message, utc_now
from events.personal_data import ERASED, open_value
from events.providers import within
from events.router import Router
from services.email import SERVICE_NAME
from services.email.context import EmailContext
from services.email.store import Recipient

log = logging.getLogger("choreo.email")

CONFIRMATION: EmailTemplate = "order_confirmation"
CANCELLATION: EmailTemplate = "order_cancelled"
RETURN_CONFIRMATION: EmailTemplate = "return_confirmation"
ERASED_REASON = "not sent: the customer's personal data is erased"

router: Router[EmailContext] = Router(SERVICE_NAME, CATALOG)


def render(
    template: EmailTemplate, order_id: str, name: str | None, detail: str
) -> tuple[str, str]:
    """The subject and body of a mail (``order_id``: the order's, or the return's for a
    return's mail)."""
    greeting = f"Hello {name}," if name else "Hello,"
    if template == CONFIRMATION:
        return (
            f"Your order {order_id} is on its way",
            f"{greeting}\n\nyour order {order_id} has shipped. {detail}\n",
        )
    if template == CANCELLATION:
        return (
            f"Your order {order_id} was cancelled",
            f"{greeting}\n\nwe had to cancel your order {order_id} ({detail}). "
            "Any payment has been refunded.\n",
        )
    if template == RETURN_CONFIRMATION:
        return (
            f"Your return {order_id} is refunded",
            f"{greeting}\n\nwe received your return {order_id}. {detail}\n",
        )
    raise PermanentError(f"the email service cannot render {template}")


async def send_once(
    order_id: str,
    template: EmailTemplate,
    detail: str,
    ctx: EmailContext,
    *,
    awaited: str = "order.placed",
) -> list[Event]:
    """Send ``template`` for the order (or return) once; a repeat re-emits the first
    ``email.sent``. ``awaited``: the event that names the recipient."""
    sent, recipient = await ctx.store.sent_and_recipient(order_id)
    mail = next((m for m in sent if m.template == template), None)
    if mail is None:
        if recipient is None:
            raise NotReadyError(f"{order_id}: {awaited} not seen yet, no recipient")
        to, name = await _opened(recipient, ctx)
        if to == ERASED:
            log.info("order %s: %s not sent, the customer was forgotten", order_id, template)
            return [
                EmailFailed(
                    template=template, reason=ERASED_REASON, permanent=True, failed_at=utc_now()
                )
            ]
        subject, body = render(template, order_id, name, detail)
        message_id = await within(
            ctx.provider.send(
                idempotency_key=f"{order_id}:{template}",
                to=to,
                subject=subject,
                body=body,
            ),
            ctx.config.timeout_s,
            "the mailer",
        )
        mail = await ctx.store.record_sent(order_id, template, message_id, utc_now())
        log.info("order %s: sent %s as %s", order_id, template, message_id)
    return [EmailSent(template=mail.template, message_id=mail.message_id, sent_at=mail.sent_at)]


async def _opened(recipient: Recipient, ctx: EmailContext) -> tuple[str, str | None]:
    """The recipient's address and name as plain text (:data:`ERASED` / None once erased)."""
    to = await open_value(ctx.keyring, recipient.email, "customer_email")
    if recipient.name is None:
        return to, None
    name = await open_value(ctx.keyring, recipient.name, "customer_name")
    return to, None if name == ERASED else name


def failed(template: EmailTemplate, error: BaseException) -> list[Event]:
    """``email.failed`` for a mail the runtime gave up on."""
    return [
        EmailFailed(
            template=template,
            reason=str(error) or type(error).__name__,
            permanent=isinstance(error, PermanentError),
            failed_at=utc_now(),
        )
    ]


@router.on(OrderPlaced)
async def remember_recipient(message: Message[OrderPlaced], ctx: EmailContext) -> list[Event]:
    """Keep who gets the order's mails."""
    placed = message.event
    await ctx.store.save_recipient(
        Recipient(message.saga_key, placed.customer_email, placed.customer_name)
    )
    return []


async def confirmation_failed(
    message: Message[ShipmentScheduled], error: BaseException, ctx: EmailContext
) -> list[Event]:
    """Give-up hook: the confirmation could not be sent."""
    log.warning("order %s: gave up on %s: %s", message.saga_key, CONFIRMATION, error)
    return failed(CONFIRMATION, error)


@router.on(ShipmentScheduled, on_give_up=confirmation_failed, provider="mailer")
async def send_confirmation(message: Message[ShipmentScheduled], ctx: EmailContext) -> list[Event]:
    """Tell the customer the order shipped."""
    shipment = message.event
    eta = shipment.estimated_delivery
    detail = f"{shipment.carrier} delivers it" + (f" by {eta:%d %B %Y}." if eta else " soon.")
    return await send_once(message.saga_key, CONFIRMATION, detail, ctx)


async def cancellation_failed(
    message: Message[OrderCancelled], error: BaseException, ctx: EmailContext
) -> list[Event]:
    """Give-up hook: the cancellation notice could not be sent."""
    log.warning("order %s: gave up on %s: %s", message.saga_key, CANCELLATION, error)
    return failed(CANCELLATION, error)


@router.on(OrderCancelled, on_give_up=cancellation_failed, provider="mailer")
async def send_cancellation(message: Message[OrderCancelled], ctx: EmailContext) -> list[Event]:
    """Tell the customer the order was cancelled."""
    reason = message.event.reason.replace("_", " ")
    return await send_once(message.saga_key, CANCELLATION, reason, ctx)
