"""The API application can be built where `choreo service api` builds it: outside a running
event loop (regression: the operations' Kafka producer was created eagerly, and aiokafka
refuses to be created without a running loop, so the api process died at start)."""

from __future__ import annotations

from events.settings import Settings
from projections.api import create_app
from projections.tokens import ApiSettings


def test_the_app_is_built_outside_an_event_loop(tmp_path):
    app = create_app(Settings(topic_prefix="unit."), ApiSettings(tokens_file=tmp_path / "t.json"))
    paths = app.openapi()["paths"].keys()
    assert {"/orders/{order_id}/approve", "/dead-letters/redrive", "/health"} <= paths
