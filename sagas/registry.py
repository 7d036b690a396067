"""Every saga definition a process knows, by type and version."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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

    def __iter__(self) -> Iterator[SagaDefinition]:
        return iter(self._by_key.values())
