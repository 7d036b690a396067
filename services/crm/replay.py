"""The external CRM during a replay: pushes nothing.

:class:`ReplayCrm` implements :class:`~services.crm.provider.CrmSystem` for
``choreo replay crm``. A push returns nothing the handlers keep (the profile is computed from
the CRM service's own tables), so replaying it means only not pushing again; the replay
driver checks that the handler emits the ``crm.customer_updated`` the live run emitted.
"""

from __future__ import annotations


class ReplayCrm:
    """A :class:`~services.crm.provider.CrmSystem` that pushes nothing."""

    async def push_profile(
        self, *, customer_id: str, currency: str, orders_count: int, lifetime_value_minor: int
    ) -> None:
        return None
