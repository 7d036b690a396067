"""Every saga definition a process knows, by type and version."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

from events.catalog import Catalog
from events.model import Event
from sagas.definition import HumanTask, InvalidDefinition, SagaDefinition, Step


class SagaRegistry:
    """The definitions a process knows, by saga type and version; the highest version of a
    type starts its new sagas, and a running saga finishes on the version it started with."""

    def __init__(self, definitions: Sequence[SagaDefinition]) -> None:
        self._by_key: dict[tuple[str, int], SagaDefinition] = {}
        for d in definitions:
            key = (d.saga_type, d.version)
            if key in self._by_key:
                raise InvalidDefinition(
                    f"saga definition {d.saga_type} v{d.version} is defined twice"
                )
            self._by_key[key] = d

    @property
    def types(self) -> list[str]:
        return sorted({t for t, _ in self._by_key})

    def versions(self, saga_type: str) -> list[int]:
        return sorted(v for t, v in self._by_key if t == saga_type)

    def current(self, saga_type: str) -> SagaDefinition:
        """The version new sagas of ``saga_type`` start on."""
        versions = self.versions(saga_type)
        if not versions:
            raise KeyError(f"no saga type {saga_type!r}; known: {', '.join(self.types)}")
        return self._by_key[saga_type, versions[-1]]

    def get(self, saga_type: str, version: int) -> SagaDefinition:
        try:
            return self._by_key[saga_type, version]
        except KeyError:
            have = self.versions(saga_type)
            raise KeyError(f"no saga definition {saga_type} v{version} (have {have})") from None

    def starting(self, event: Event) -> SagaDefinition | None:
        """The current definition of the saga type ``event`` starts: the type whose start
        event it is, else the one type that names it (it came before the start event)."""
        current = [self.current(saga_type) for saga_type in self.types]
        for d in current:
            if d.start.matches(event):
                return d
        naming = [d for d in current if d.names(event)]
        return naming[0] if len(naming) == 1 else None

    @cached_property
    def keyed_by(self) -> dict[str, str]:
        """Saga type by the name of its key (``order_id`` → ``order``), for the key names
        one type alone uses: a saga's data under such a name is another saga's key, which
        pages link to (a return's ``order_id``). Once per registry (its definitions are fixed
        at construction): every console page asks."""
        types_by_key: dict[str, set[str]] = {}
        for d in self:
            types_by_key.setdefault(d.key, set()).add(d.saga_type)
        return {key: types.pop() for key, types in types_by_key.items() if len(types) == 1}

    def names(self, saga_type: str) -> dict[str, str]:
        """The other saga types whose key a ``saga_type`` saga's start captures, by the name
        it captures it under (a return names its order: ``{"order_id": "order"}``); the
        reverse of :meth:`naming`."""
        if saga_type not in self.types:
            return {}
        return {
            name: self.keyed_by[name]
            for name in self.current(saga_type).start.capture
            if self.keyed_by.get(name, saga_type) != saga_type
        }

    def naming(self, saga_type: str) -> list[str]:
        """The other saga types whose start captures a ``saga_type`` saga's key under its
        name (returns capture their ``order_id``): a saga's page lists theirs that name it."""
        if saga_type not in self.types:  # rows of a type no longer defined: named by none
            return []
        key = self.current(saga_type).key
        if self.keyed_by.get(key) != saga_type:
            return []
        return sorted(
            {d.saga_type for d in self if d.saga_type != saga_type and key in d.start.capture}
        )

    def with_knobs(self, overrides: Mapping[str, Any]) -> SagaRegistry:
        """Every definition with the overrides of the knobs it has (operators tune by name)."""
        return SagaRegistry(
            [d.with_knobs({k: v for k, v in overrides.items() if k in d.knobs()}) for d in self]
        )

    @property
    def catalog(self) -> Catalog:
        """Every event type some definition names, with its model."""
        return Catalog(dict.fromkeys(m for d in self for m in d.catalog.values()))

    @property
    def listens(self) -> tuple[type[Event], ...]:
        """Every event some definition reacts to: starts, steps' triggers, signals, successes
        and failures, human tasks' answers, compensations' acknowledgements (not the commands
        the coordinator itself sends)."""
        return tuple(dict.fromkeys(m for d in self for m in _listened(d)))

    @property
    def emits(self) -> tuple[type[Event], ...]:
        """What the coordinator may write for these definitions: compensating commands and
        what endings and human tasks build."""
        commands = (s.compensation.command for d in self for s in d.steps if s.compensation)
        return tuple(dict.fromkeys([*commands, *(m for d in self for m in d.emits)]))

    def __iter__(self) -> Iterator[SagaDefinition]:
        return iter(self._by_key.values())


def _listened(d: SagaDefinition) -> Iterator[type[Event]]:
    yield d.start.event
    for node in d.nodes:
        match node:
            case Step():
                for signal in (node.triggered_by, node.started_on, *node.succeeded_on):
                    if signal is not None:
                        yield signal.event
                yield from (f.on.event for f in node.fails if f.on is not None)
                if node.compensation is not None and node.compensation.acknowledged_by:
                    yield node.compensation.acknowledged_by
            case HumanTask():
                yield node.approve_on.event
                if node.reject_on.on is not None:
                    yield node.reject_on.on.event
