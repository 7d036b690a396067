"""Which handler takes which event: the :class:`Router` a process declares its handlers on.

A handler is ``async def h(message: Message[SomeEvent], context: C) -> list[Event]``: it
returns the events and commands to emit and never touches Kafka. Registration is checked at
import time against the event catalog the router is given.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from events.model import Event, Message
from events.settings import Settings
from events.topics import topic_for

C = TypeVar("C")
E = TypeVar("E", bound=Event)
R = TypeVar("R", bound=Iterable[Event] | None)

PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]*")
"""What a provider's name looks like (``gateway``, ``carrier``, ``mailer``, ``crm``)."""

HandlerResult = Iterable[Event] | None
HandlerFunc = Callable[[Message[Any], Any], Awaitable[HandlerResult]]
GiveUpFunc = Callable[[Message[Any], BaseException, Any], Awaitable[HandlerResult]]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One registered handler: which event type it takes and the function.

    ``on_give_up``, if set, runs (through the same delivery, so atomically and deduplicated)
    after the message was dead-lettered, and returns events that record the failure, e.g.
    ``email.failed``.

    ``provider``, if set, names the external provider the handler calls (``gateway``,
    ``carrier``, ...): the runtime then runs the handler behind that provider's circuit
    breaker and bulkhead (:mod:`events.breakers`).
    """

    event_type: str
    model: type[Event]
    func: HandlerFunc
    on_give_up: GiveUpFunc | None = None
    provider: str | None = None

    @property
    def name(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


class Router(Generic[C]):
    """Maps event types to handlers. Registration is checked at import time.

    ``C`` is whatever the process's delivery hands in as the handler's context (a service's
    state store, bound to the transaction).

    Args:
        name: names the router in error messages (the process's name).
        catalog: the event types handlers may take (event type → model); a handler's model
            must be the catalog's model of its event type.
    """

    def __init__(self, name: str, catalog: Mapping[str, type[Event]]) -> None:
        self.name = name
        self.catalog = catalog
        self._handlers: dict[str, HandlerSpec] = {}

    def on(
        self,
        model: type[E],
        *,
        on_give_up: Callable[[Message[E], BaseException, C], Awaitable[HandlerResult]]
        | None = None,
        provider: str | None = None,
    ) -> Callable[
        [Callable[[Message[E], C], Awaitable[R]]],
        Callable[[Message[E], C], Awaitable[R]],
    ]:
        """Register the decorated function as the handler of ``model``'s event type.

        Args:
            model: the event type it takes.
            on_give_up: runs after the message was dead-lettered (see :class:`HandlerSpec`).
            provider: the external provider it calls, if any: a lower-case name of letters,
                digits and ``_`` (it also names the provider's ``CHOREO_BREAKER_<NAME>_*``
                settings).
        """
        if self.catalog.get(getattr(model, "event_type", "")) is not model:
            raise TypeError(f"{model!r} is not an event type of the catalog")
        if provider is not None and not PROVIDER_NAME.fullmatch(provider):
            raise TypeError(f"provider {provider!r} must match {PROVIDER_NAME.pattern}")

        def register(
            func: Callable[[Message[E], C], Awaitable[R]],
        ) -> Callable[[Message[E], C], Awaitable[R]]:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(f"handler {func.__qualname__} must be an async function")
            params = [
                p
                for p in inspect.signature(func).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if len(params) != 2:
                raise TypeError(
                    f"handler {func.__qualname__} must take (message, context), "
                    f"it takes {len(params)} positional parameters"
                )
            if model.event_type in self._handlers:
                other = self._handlers[model.event_type].name
                raise TypeError(f"{model.event_type} already has a handler in {self.name}: {other}")
            self._handlers[model.event_type] = HandlerSpec(
                model.event_type,
                model,
                cast(HandlerFunc, func),
                cast(GiveUpFunc | None, on_give_up),
                provider,
            )
            return func

        return register

    def get(self, event_type: str) -> HandlerSpec | None:
        return self._handlers.get(event_type)

    @property
    def event_types(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def providers(self) -> list[str]:
        """The external providers its handlers declare they call."""
        return sorted({h.provider for h in self._handlers.values() if h.provider is not None})

    def topics(self, settings: Settings) -> list[str]:
        """The topics holding this router's event types."""
        return sorted({topic_for(t, settings) for t in self._handlers})


def caused_messages(
    message: Message[Event], outputs: HandlerResult, producer_name: str
) -> list[Message[Event]]:
    """Wrap a handler's returned events in envelopes caused by ``message``."""
    return [message.caused(event, producer=producer_name) for event in outputs or ()]
