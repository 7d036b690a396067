"""A catalog: the event types a process knows, each with the pydantic model that reads it.

The runtime is generic: a :class:`~events.router.Router` validates its handlers against the
catalog it is given and a :class:`~events.codec.Codec` decodes into its models, so a domain
(``contracts.catalog`` for the order saga) or an external service brings its own, and two
catalogs combine with ``|``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from events.model import Event


class Catalog(Mapping[str, type[Event]]):
    """Event type → model, immutable; checked when it is made.

    Args:
        models: Event models, each with its own ``event_type``.

    Raises:
        TypeError: a model is not an :class:`~events.model.Event` with an ``event_type``, or
            two models claim one event type.
    """

    def __init__(self, models: Iterable[type[Event]]) -> None:
        self._models: dict[str, type[Event]] = {}
        for model in models:
            event_type = getattr(model, "event_type", None)
            if not (isinstance(model, type) and issubclass(model, Event) and event_type):
                raise TypeError(f"{model!r} is not an event model with an event_type")
            other = self._models.get(event_type)
            if other is not None and other is not model:
                raise TypeError(f"{event_type} is claimed by {other.__name__} and {model.__name__}")
            self._models[event_type] = model

    def __getitem__(self, event_type: str) -> type[Event]:
        return self._models[event_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def __or__(self, other: Catalog) -> Catalog:
        return Catalog([*self.models, *other.models])

    def __repr__(self) -> str:
        return f"Catalog({', '.join(self._models)})"

    @property
    def models(self) -> tuple[type[Event], ...]:
        """The models, in the order they were given."""
        return tuple(self._models.values())
