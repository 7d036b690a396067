"""The runtime's own spans: the SDK's span, made without the SDK's per-span set-up.

Every delivery records a consumer span and a handler span, and the projector a span per
event: ~43 spans an order. Starting and ending one through the SDK's tracer took 11 µs and
0.45 µs more an attribute in process (a quarter to a third of it validating attributes one by
one into a locked, bounded mapping), and several times that in the running processes: most
of what tracing costs an order. :class:`RuntimeTracer` makes the same spans for less:

- the span is the SDK's :class:`~opentelemetry.sdk.trace.Span` (a subclass of it), so the
  SDK's span processors, exporters and every reader of a ``ReadableSpan`` take it as they
  are, and its events, exceptions and status work as the SDK's;
- it is made from the provider's own sampler, id generator, resource, span limits and span
  processors, parented through the OpenTelemetry context like any span (a database span the
  asyncpg instrumentation opens inside it is its child);
- what it skips: attributes of plain values (``str``, ``int``, ``float``, ``bool``, as the
  runtime's are) go straight into a dict, within the span limits; anything else, or more than
  the limits allow, falls back to the SDK's bounded mapping and its checks. Events and links
  get the SDK's bounded lists when the first one is added. The processors receive the span
  itself at its end instead of a copy (it takes no changes once ended). The SDK's own
  self-monitoring metrics (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``, off by default) do
  not count these spans.

Under a parent that was not sampled, where the sampler follows the parent (the SDK's
parent-based samplers, the default), there is no span at all: the parent's context stands for
it, with no span id, sampling result or attributes of its own (the SDK makes a dropped span
with each), and is what the hop's messages carry on. With ``--trace-sample 0.1`` that is nine
orders in ten.

When the tracer provider is not the SDK's, it hands every call to that provider's tracer.
``tests/unit/events/test_spans.py`` holds what these spans export equal to the SDK's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace.sampling import Decision, ParentBased
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

_logger = logging.getLogger(__name__)

_PLAIN = frozenset((str, int, float, bool))
_UNSET = Status(StatusCode.UNSET)


class RuntimeSpan(sdk_trace.Span):
    """An SDK span with its attributes in a plain dict while they are plain values."""

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        tracer: sdk_trace.Tracer,
        start_time: int,
    ) -> None:
        # Span.__init__ is not called: it builds the locked, bounded containers this avoids.
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._resource = tracer.resource
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._sampler = tracer.sampler
        self._trace_config = None
        self._span_processor = tracer.span_processor
        self._limits = tracer._span_limits
        self._record_exception = True
        self._set_status_on_exception = True
        self._record_end_metrics = None
        self._lock = threading.Lock()
        self._start_time = start_time
        self._end_time: int | None = None
        self._attributes: dict[str, Any] | BoundedAttributes = {}
        self._events: Any = ()
        self._links: Any = ()
        self._status = _UNSET

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        with self._lock:
            if self._end_time is not None:
                _logger.warning("Setting attribute on ended span.")
                return
            self._put(attributes)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.set_attributes({key: value})

    def _put(self, attributes: Mapping[str, types.AnyValue]) -> None:
        held = self._attributes
        if type(held) is dict:
            if self._fits(held, attributes):
                held.update(attributes)
                return
            # The SDK's mapping from here on: it checks, bounds and counts.
            held = self._attributes = BoundedAttributes(
                self._limits.max_span_attributes,
                held,
                immutable=False,
                max_value_len=self._limits.max_span_attribute_length,
            )
        for key, value in attributes.items():
            held[key] = value

    def _fits(self, held: dict[str, Any], attributes: Mapping[str, types.AnyValue]) -> bool:
        limits = self._limits
        if limits.max_span_attribute_length is not None:
            return False
        if limits.max_span_attributes is not None and (
            len(held) + len(attributes) > limits.max_span_attributes
        ):
            return False
        # An empty key or a value of another type is the SDK's to refuse or convert.
        return "" not in attributes and _PLAIN.issuperset(map(type, attributes.values()))

    def _add_event(self, event: sdk_trace.EventBase) -> None:
        self._append("_events", event, self._limits.max_events)

    def _add_link(self, link: Link) -> None:
        self._append("_links", link, self._limits.max_links)

    def _append(self, field: str, item: object, limit: int | None) -> None:
        """Add to ``_events`` or ``_links``, made the SDK's bounded list on first use."""
        with self._lock:
            if self._end_time is not None:
                _logger.warning("Tried calling _add%s on an ended span.", field[:-1])
                return
            if not getattr(self, field):
                setattr(self, field, BoundedList(limit))
            getattr(self, field).append(item)

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._end_time is not None:
                _logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
        self._span_processor._on_ending(self)
        self._span_processor.on_end(self)  # the span itself: it takes no changes from now on


class CurrentSpan:
    """``with`` a span made the current one, as the SDK's ``start_as_current_span``: an
    exception leaving the block is recorded on the span and sets its status to error."""

    __slots__ = ("_token", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def __enter__(self) -> trace.Span:
        self._token = context_api.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        context_api.detach(self._token)
        span = self.span
        if isinstance(error, Exception) and span.is_recording():
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()


class RuntimeTracer:
    """Starts :class:`RuntimeSpan` spans for the current tracer provider (looked up on each
    call, so a provider set later, or a test's, is the one used)."""

    def __init__(self, name: str, provider: trace.TracerProvider | None = None) -> None:
        self.name = name
        self._given = provider
        self._provider: object = None
        self._tracer: trace.Tracer = trace.NoOpTracer()
        self._drops_unsampled = False

    def _current(self) -> trace.Tracer:
        provider = self._given or trace.get_tracer_provider()
        if provider is not self._provider:
            self._tracer = provider.get_tracer(self.name)
            self._provider = provider
            self._drops_unsampled = _drops_unsampled(self._tracer)
        return self._tracer

    def dropped(self, context: context_api.Context | None = None) -> bool:
        """Whether a span started under ``context`` records nothing because its parent was not
        sampled (and the sampler follows the parent, as the SDK's default does): the caller
        may then skip the span's attributes, and the span itself is its parent's context."""
        self._current()
        if not self._drops_unsampled:
            return False
        parent = trace.get_current_span(context).get_span_context()
        return parent.is_valid and not parent.trace_flags.sampled

    def start_as_current_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, types.AnyValue] | None = None,
        links: Sequence[Link] = (),
    ) -> CurrentSpan:
        return CurrentSpan(self.start_span(name, context, kind, attributes, links))

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, types.AnyValue] | None = None,
        links: Sequence[Link] = (),
        start_time: int | None = None,
    ) -> trace.Span:
        tracer = self._current()
        # A span with links (the relay's, when on) is rare: the SDK's own checks them.
        if links or not isinstance(tracer, sdk_trace.Tracer) or not tracer._is_enabled():
            return tracer.start_span(name, context, kind, attributes, links, start_time)
        # As the SDK's Tracer.start_span, from here to the span.
        carried = trace.get_current_span(context).get_span_context()
        if self._drops_unsampled and carried.is_valid and not carried.trace_flags.sampled:
            # What the sampler would drop: its parent's context stands for it (no new span
            # id, no sampling result, nothing recorded), and is what the next hop inherits.
            return trace.NonRecordingSpan(carried)
        parent: SpanContext | None = carried
        ids = tracer.id_generator
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        else:
            parent = None
            trace_id = ids.generate_trace_id()
            random_trace_id = ids.is_trace_id_random()
        sampled = tracer.sampler.should_sample(context, trace_id, name, kind, attributes)
        flags = (
            TraceFlags.SAMPLED
            if sampled.decision is Decision.RECORD_AND_SAMPLE
            else TraceFlags.DEFAULT
        )
        if random_trace_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        span_context = SpanContext(
            trace_id,
            ids.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=sampled.trace_state,
        )
        if sampled.decision is Decision.DROP:
            return trace.NonRecordingSpan(span_context)
        span = RuntimeSpan(
            name,
            span_context,
            parent,
            kind,
            tracer,
            time_ns() if start_time is None else start_time,
        )
        if sampled.attributes:
            span._put(sampled.attributes)
        tracer.span_processor.on_start(span, parent_context=context)
        return span


_UNSAMPLED = [
    SpanContext(trace_id, 1, is_remote=remote, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    for trace_id in (1, (1 << 128) - 1)
    for remote in (True, False)
]


def _drops_unsampled(tracer: trace.Tracer) -> bool:
    """Whether ``tracer``'s sampler drops every span whose parent (remote or local) was not
    sampled, as the SDK's parent-based samplers do by default (``parentbased_always_on``,
    ``parentbased_traceidratio``): probed with unsampled parents of the lowest and highest
    trace ids, not read from the sampler's internals."""
    if not isinstance(tracer, sdk_trace.Tracer) or not isinstance(tracer.sampler, ParentBased):
        return False
    return all(
        tracer.sampler.should_sample(
            trace.set_span_in_context(trace.NonRecordingSpan(parent)), parent.trace_id, "probe"
        ).decision
        is Decision.DROP
        for parent in _UNSAMPLED
    )
