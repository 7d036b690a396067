"""Routing keys whose escaped "/" must stay in them (projections.key_paths)."""

from __future__ import annotations

from typing import Any

import pytest

from projections.key_paths import (
    EscapedSlashes,
    SagaKeyConvertor,
    key_segment,
    keyed,
    routing_path,
)


@pytest.mark.parametrize(
    ("raw", "routed", "key"),
    [
        (b"/sagas/order/inv%2Fhistory", "/sagas/order/inv%2Fhistory", "inv/history"),
        (b"/sagas/order/inv%2fhistory", "/sagas/order/inv%2Fhistory", "inv/history"),
        (b"/sagas/order/50%252F", "/sagas/order/50%252F", "50%2F"),
        (b"/sagas/order/caf%C3%A9%20x", "/sagas/order/caf\u00e9 x", "caf\u00e9 x"),
        (b"/sagas/order/a%0Ab", "/sagas/order/a\nb", "a\nb"),
        # A stray "%" (a malformed escape) is text, and stays text.
        (b"/sagas/order/100%", "/sagas/order/100%25", "100%"),
        (b"/sagas/order/%%32F", "/sagas/order/%252F", "%2F"),
    ],
)
def test_the_routed_path_keeps_escaped_slashes_and_percents(
    raw: bytes, routed: str, key: str
) -> None:
    assert routing_path(raw) == routed
    assert SagaKeyConvertor().convert(routed.rpartition("/")[2]) == key


def test_a_key_segment_escapes_every_slash_and_converts_back() -> None:
    for key in ("inv/2026/7", "inv/history", "50%2F", "a b?#", "caf\u00e9"):
        segment = key_segment(key)
        assert "/" not in segment
        assert SagaKeyConvertor().convert(routing_path(segment.encode())) == key
        assert SagaKeyConvertor().to_string(key) == segment


def test_keyed_routes_name_their_prefix_and_take_the_converter() -> None:
    assert keyed("/test-keyed/{saga_type}/{saga_key}/history") == (
        "/test-keyed/{saga_type}/{saga_key:key}/history"
    )


async def _routed(scope: dict[str, Any]) -> str:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["path"])

    await EscapedSlashes(app)(scope, None, None)  # type: ignore[arg-type]
    return seen[0]


async def test_the_middleware_routes_keyed_paths_on_the_raw_path_only() -> None:
    keyed("/test-mw/{saga_key}")
    scope = {"type": "http", "path": "/test-mw/a/history", "raw_path": b"/test-mw/a%2Fhistory"}
    assert await _routed(scope) == "/test-mw/a%2Fhistory"
    # Elsewhere, the path is the server's.
    other = {"type": "http", "path": "/health/a/b", "raw_path": b"/health/a%2Fb"}
    assert await _routed(other) == "/health/a/b"
    # Without a raw path, or one that is not this path's, every "/" separates, the key intact.
    bare = {"type": "http", "path": "/test-mw/50%/x"}
    assert await _routed(bare) == "/test-mw/50%25/x"
    mismatched = {"type": "http", "path": "/test-mw/b", "raw_path": b"/test-mw/a%2Fb"}
    assert await _routed(mismatched) == "/test-mw/b"
    assert await _routed({"type": "lifespan", "path": "/test-mw/x"}) == "/test-mw/x"
