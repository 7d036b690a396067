"""Every saga definition Choreo ships, one line each: what the coordinator runs."""

from __future__ import annotations

from sagas import order, returns
from sagas.registry import SagaRegistry

SAGAS = SagaRegistry([order.V1, returns.V1])
"""Register a new saga (or a new version) here; never edit a released version."""
