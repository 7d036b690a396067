"""Every process of the platform, listed once.

``choreo run`` starts them all, ``choreo service NAME`` runs one, ``choreo replay NAME``
rebuilds a service's state, and the end-to-end platform and the benchmarks start them: all
from :data:`PROCESSES`. Adding a process is a package exporting its
:class:`~events.process.ProcessSpec` and one line here. Importing this module is cheap: a spec
names its builder, which is imported only when the process is built (see
:class:`~events.process.ProcessSpec`).
"""

from __future__ import annotations

from events.errors import ChoreoError
from events.process import ProcessSpec
from projections import API, PROJECTOR
from saga_coordinator import PROCESS as COORDINATOR
from services.crm import PROCESS as CRM
from services.email import PROCESS as EMAIL
from services.inventory import PROCESS as INVENTORY
from services.payment import PROCESS as PAYMENT
from services.shipping import PROCESS as SHIPPING

PROCESSES: tuple[ProcessSpec, ...] = (
    INVENTORY,
    PAYMENT,
    SHIPPING,
    CRM,
    EMAIL,
    COORDINATOR,
    PROJECTOR,
    API,
)
"""Everything ``choreo run`` starts, in this order."""

NAMES: tuple[str, ...] = tuple(spec.name for spec in PROCESSES)
"""The processes' names, in :data:`PROCESSES` order."""

SERVICES: tuple[ProcessSpec, ...] = tuple(spec for spec in PROCESSES if spec.is_service)
"""The processes built as a :class:`~events.service.Service` (the replayable ones)."""

_BY_NAME: dict[str, ProcessSpec] = {
    name: spec for spec in PROCESSES for name in (spec.name, *spec.aliases)
}


class UnknownProcess(ChoreoError, KeyError):
    """No registered process has that name (or alias)."""

    def __str__(self) -> str:
        return str(self.args[0])


def get(name: str) -> ProcessSpec:
    """The process named ``name`` or one of its aliases (``coordinator``).

    Raises:
        UnknownProcess: no process has that name.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownProcess(f"unknown process {name!r}; one of: {', '.join(NAMES)}") from None
