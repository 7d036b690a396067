"""CRM: keeps each customer's profile (orders and lifetime value) and pushes it to the CRM.

Reacts to:
    ``order.placed``: remember the order's customer and total; emits nothing.
    ``shipment.scheduled``: count the order in its customer's profile, once per order →
    ``crm.customer_updated``.

A profile is kept per customer and currency: amounts in different currencies are never added.
"""

from __future__ import annotations

from contracts.catalog import CrmCustomerUpdated
from events.process import ProcessSpec

SERVICE_NAME = "crm"

PROCESS = ProcessSpec(
    name=SERVICE_NAME,
    builder="services.crm.service:build",
    replay_builder="services.crm.service:build_for_replay",
    produces=(CrmCustomerUpdated,),
)
"""The crm process, as :mod:`choreo.registry` lists it."""
