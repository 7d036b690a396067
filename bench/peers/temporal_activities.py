"""The order saga's activities on Temporal: the services' work, one PostgreSQL transaction
each (plus the simulated provider's call), idempotent by order id.

They are methods of one class holding the connection pool and the providers (the Python
SDK's "activity method" pattern); the worker of :mod:`bench.peers.temporal_saga` registers
them, the workflow of :mod:`bench.peers.temporal_workflow` calls them by reference.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from bench.peers import common
from bench.peers.common import PeerOrder, Providers
from services.payment.provider import Declined
from services.shipping.provider import Refused


class OrderActivities:
    """The services' work: one PostgreSQL transaction each (plus the provider call)."""

    def __init__(self, engine: AsyncEngine, schema: str, providers: Providers) -> None:
        self.engine = engine
        self.schema = schema
        self.providers = providers

    @activity.defn(name="reserve")
    async def reserve(self, order: PeerOrder) -> tuple[bool, str]:
        async with self.engine.begin() as tx:
            return await common.reserve(tx, self.schema, order)

    @activity.defn(name="release")
    async def release(self, order_id: str) -> None:
        async with self.engine.begin() as tx:
            await common.release(tx, self.schema, order_id)

    @activity.defn(name="charge")
    async def charge(self, order: PeerOrder) -> str:
        """Charge once (the order id is the gateway's idempotency key); ``charged`` or
        ``declined``."""
        async with self.engine.begin() as tx:
            existing = await common.payment_of(tx, self.schema, order.order_id)
            if existing is not None:
                return str(existing["outcome"])
            result = await self.providers.gateway.charge(
                idempotency_key=order.order_id,
                amount_minor=order.total_minor,
                currency=order.currency,
                token=order.token,
            )
            declined = isinstance(result, Declined)
            outcome = "declined" if declined else "charged"
            payment_id = None if isinstance(result, Declined) else result.payment_id
            await common.record_payment(tx, self.schema, order, outcome, payment_id)
            return outcome

    @activity.defn(name="refund")
    async def refund(self, order: PeerOrder) -> None:
        async with self.engine.begin() as tx:
            existing = await common.payment_of(tx, self.schema, order.order_id)
            if existing is not None and existing["refund_count"]:
                return
            refunded = await self.providers.gateway.refund(
                idempotency_key=order.order_id,
                payment_id=existing["payment_id"] if existing else None,
                amount_minor=order.total_minor,
                currency=order.currency,
            )
            await common.record_refund(tx, self.schema, order, refunded is not None)

    @activity.defn(name="book")
    async def book(self, order: PeerOrder) -> str | None:
        """Book a carrier once; the shipment id, or None when the carrier refused."""
        async with self.engine.begin() as tx:
            existing = await common.shipment_of(tx, self.schema, order.order_id)
            if existing is not None:
                return existing["shipment_id"]
            address, items = common.parcel_of(order)
            answer = await self.providers.carrier.book(
                reference=order.order_id, address=address, items=items
            )
            if isinstance(answer, Refused):
                await common.record_shipment(
                    tx, self.schema, order.order_id, None, None, answer.reason
                )
                return None
            await common.record_shipment(
                tx, self.schema, order.order_id, answer.shipment_id, answer.carrier, ""
            )
            return answer.shipment_id

    @activity.defn(name="cancel_shipment")
    async def cancel_shipment(self, order_id: str) -> None:
        async with self.engine.begin() as tx:
            existing = await common.shipment_of(tx, self.schema, order_id)
            if existing and existing["shipment_id"] and existing["cancelled_at"] is None:
                await self.providers.carrier.cancel(shipment_id=existing["shipment_id"])
            await common.record_shipment_cancelled(tx, self.schema, order_id)

    @activity.defn(name="ship_stock")
    async def ship_stock(self, order_id: str) -> None:
        async with self.engine.begin() as tx:
            await common.ship_stock(tx, self.schema, order_id)

    @activity.defn(name="update_crm")
    async def update_crm(self, order: PeerOrder) -> None:
        async with self.engine.begin() as tx:
            count, value, counted_now = await common.count_order(tx, self.schema, order)
            if counted_now:
                await self.providers.crm.push_profile(
                    customer_id=order.customer_id,
                    currency=order.currency,
                    orders_count=count,
                    lifetime_value_minor=value,
                )

    @activity.defn(name="send_email")
    async def send_email(self, order: PeerOrder, template: str, detail: str) -> None:
        async with self.engine.begin() as tx:
            if await common.sent_email(tx, self.schema, order.order_id, template) is not None:
                return
            subject, body = common.email_text(template, order, detail)
            message_id = await self.providers.mailer.send(
                idempotency_key=f"{order.order_id}:{template}",
                to=order.email,
                subject=subject,
                body=body,
            )
            await common.record_email(tx, self.schema, order.order_id, template, message_id)

    def all(self) -> list[Any]:
        return [
            self.reserve,
            self.release,
            self.charge,
            self.refund,
            self.book,
            self.cancel_shipment,
            self.ship_stock,
            self.update_crm,
            self.send_email,
        ]
