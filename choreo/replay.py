"""``choreo replay NAME``: the replay engine (:mod:`events.replay.engine`) for a process named
in :mod:`choreo.registry`.

This layer resolves the name (``coordinator`` is the saga coordinator's alias), builds the
process as its spec says a replay runs it (with its replay provider), and refuses to replay a
process that is still running.
"""

from __future__ import annotations

from typing import Any

from choreo import registry
from events.codec import Codec
from events.errors import ChoreoError
from events.process import ProcessSpec
from events.replay.engine import Progress, ReplayReport, consumer_group_members, replay_service
from events.service import Service
from events.settings import Settings


class ReplayError(ChoreoError):
    """A replay cannot start (unknown process, the process still running, ...)."""


def _spec(name: str) -> ProcessSpec:
    """The replayable process ``name`` stands for."""
    try:
        spec = registry.get(name)
    except registry.UnknownProcess:
        spec = None
    if spec is None or not spec.is_service:
        choices = [n for s in registry.SERVICES for n in (s.name, *s.aliases)]
        raise ReplayError(f"cannot replay {name!r}; one of: {', '.join(choices)}")
    return spec


def process_name(name: str) -> str:
    """The process ``name`` stands for (``coordinator`` → ``saga-coordinator``).

    Raises:
        ReplayError: no replayable process has that name.
    """
    return _spec(name).name


def build_for_replay(name: str, settings: Settings) -> Service[Any]:
    """Process ``name`` as a replay runs it: with its replay provider instead of the real one.

    Inventory has no external provider (its stock feed is read once, at start, from the seed
    file) and the coordinator none at all: both are built as they run live.
    """
    return _spec(name).build_for_replay(settings)


async def group_members(settings: Settings, process: str) -> int:
    """How many consumers are in the process's consumer group (0: it is not running; a killed
    process stays a member until its session times out)."""
    return await consumer_group_members(settings, _spec(process).group(settings))


async def replay(
    settings: Settings,
    name: str,
    *,
    service: Service[Any] | None = None,
    progress: Progress | None = None,
    codec: Codec | None = None,
    require_stopped: bool = True,
) -> ReplayReport:
    """Rebuild process ``name``'s schema from the log (see :mod:`events.replay.engine`).

    Args:
        settings: The shared settings (topic prefix, database, Kafka).
        name: inventory, payment, shipping, crm, email, saga-coordinator (or coordinator).
        service: The process as built for the replay; defaults to :func:`build_for_replay`
            (with the configuration from the environment).
        progress: Called as inputs are replayed.
        codec: Decodes the log; loaded from ``settings.schemas_dir`` by default.
        require_stopped: Refuse to run while the process's consumer group has members.

    Raises:
        ReplayError: unknown process, or the process is running.
    """
    spec = _spec(name)
    if require_stopped and (members := await group_members(settings, spec.name)):
        raise ReplayError(
            f"{spec.name} is running ({members} member(s) in its consumer group); stop it first"
        )
    service = service or spec.build_for_replay(settings)
    return await replay_service(settings, service, progress=progress, codec=codec)
