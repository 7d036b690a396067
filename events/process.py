"""What a Choreo process is, as data: its name, how to build or run it, its schema and topics.

Every process package exports one :class:`ProcessSpec` (``PROCESS``) and ``choreo.registry``
lists them once: the supervisor, ``choreo service``, ``choreo replay``, the end-to-end platform
and the benchmarks read that list. A process's durable timers (:class:`~events.service.Timers`)
are part of its :class:`~events.service.Service`, so a replay drives them like any input.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from events.model import Event
from events.settings import Settings

if TYPE_CHECKING:
    from events.service import Service

# The registry of specs is imported by every `choreo` command, `--help` included: what pulls
# in asyncpg, aiokafka or the runtime (router, codec, breakers) is imported where it is used.


@dataclass(frozen=True, slots=True)
class ProcessTopics:
    """The topics a process reads and writes (what its Kafka ACLs must allow)."""

    consumes: list[str]
    produces: list[str]


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the platform: a :class:`~events.service.Service` run by the shared
    runtime (``builder``), or a process with a runtime of its own (``runner``: the projector,
    the API).

    Builders and runners are named ``"module:function"`` and imported when called. Why: every
    ``choreo`` command that names processes imports the registry, and each ``choreo service
    NAME`` child runs one process; importing every process's handlers, providers and web stack
    (FastAPI and uvicorn for the API) for that would slow every command and child for nothing.
    The registry's unit test imports and builds each one.

    Attributes:
        name: ``inventory``, ..., ``saga-coordinator``, ``projector``, ``api``: names the
            consumer group (``<prefix><name>``), the schema (:meth:`schema`), the OTel
            ``service.name`` and the envelopes' ``producer``.
        produces: The event types it emits (and so the topics it writes).
        builder: ``function(settings) -> Service``, for a service.
        runner: ``function(settings) -> None`` running it until SIGTERM, for a process with a
            runtime of its own.
        replay_builder: ``function(settings) -> Service`` as ``choreo replay`` runs it (with
            its replay provider); defaults to ``builder``. Only services are replayed.
        consumes: The event types a process with its own runtime reads; a service's are its
            router's.
        aliases: Other names the CLI accepts for it (``coordinator``).
    """

    name: str
    produces: tuple[type[Event], ...] = ()
    builder: str | None = None
    runner: str | None = None
    replay_builder: str | None = None
    consumes: tuple[type[Event], ...] = ()
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.builder is None) == (self.runner is None):
            raise ValueError(f"process {self.name}: give a builder or a runner, not both")
        if self.builder is not None and self.consumes:
            raise ValueError(f"process {self.name}: a service consumes what its router handles")
        if self.replay_builder is not None and self.builder is None:
            raise ValueError(f"process {self.name}: only services are replayed")
        for ref in (self.builder, self.runner, self.replay_builder):
            if ref is not None and not all(ref.partition(":")[::2]):
                raise ValueError(f"process {self.name}: {ref!r} is not 'module:function'")

    @property
    def is_service(self) -> bool:
        """Built as a :class:`~events.service.Service` (and so replayable)."""
        return self.builder is not None

    def schema(self, settings: Settings) -> str:
        """The PostgreSQL schema holding its state (the API's: its redrive audit)."""
        from events.database import schema_name

        return schema_name(settings, self.name)

    def group(self, settings: Settings) -> str:
        """Its Kafka consumer group: ``<prefix><name>``."""
        return f"{settings.topic_prefix}{self.name}"

    def build(self, settings: Settings) -> Service[Any]:
        """The service, as it runs live."""
        if self.builder is None:
            raise TypeError(f"process {self.name} is not a service; run it with load_runner()")
        built: Service[Any] = _load(self.builder)(settings)
        return built

    def build_for_replay(self, settings: Settings) -> Service[Any]:
        """The service as a replay runs it: with its replay provider, if it has one."""
        if self.replay_builder is None:
            return self.build(settings)
        built: Service[Any] = _load(self.replay_builder)(settings)
        return built

    def load_runner(self) -> Callable[[Settings], None]:
        """The function running a process with its own runtime until SIGTERM (a service runs
        with :func:`~events.service.run_service` and :meth:`build`)."""
        if self.runner is None:
            raise TypeError(f"process {self.name} is a service; run it with run_service()")
        runner: Callable[[Settings], None] = _load(self.runner)
        return runner

    def consumed_event_types(self, settings: Settings) -> list[str]:
        """The event types it reads: its router's, or those declared."""
        if self.is_service:
            return self.build(settings).router.event_types
        return sorted(model.event_type for model in self.consumes)

    def topics(self, settings: Settings) -> ProcessTopics:
        """The topics it reads and writes."""
        from events.topics import topic_for

        return ProcessTopics(
            consumes=sorted({topic_for(t, settings) for t in self.consumed_event_types(settings)}),
            produces=sorted({topic_for(model, settings) for model in self.produces}),
        )


def _load(ref: str) -> Any:
    """The object ``"module:attribute"`` names, importing its module."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)
