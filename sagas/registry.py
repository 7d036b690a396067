"""Every saga definition a process knows, by type and version."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from events.model import Event
from sagas.definition import InvalidDefinition, SagaDefinition


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

    def with_knobs(self, overrides: Mapping[str, Any]) -> SagaRegistry:
        """Every definition with the overrides of the knobs it has (operators tune by name)."""
        return SagaRegistry(
            [d.with_knobs({k: v for k, v in overrides.items() if k in d.knobs()}) for d in self]
        )

    def __iter__(self) -> Iterator[SagaDefinition]:
        return iter(self._by_key.values())
