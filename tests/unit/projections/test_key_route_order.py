"""A saga's part routes (``…/{saga_key}/history``, ``…/live``, ``…/approve``) come before the
saga's own route, whose key takes any text: registered after it, a part would be taken for the
saga of a longer key (``k/history``) and never reached with a plain key."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute, Match, Route

from events.settings import Settings
from projections.api import create_app
from projections.tokens import ApiSettings


def _flat(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The app's routes in the order it tries them, included routers opened."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat(included.routes)
        else:
            yield route


def _routed_to(routes: list[BaseRoute], path: str, method: str) -> Any:
    """The endpoint ``method path`` reaches: the first full match, as Starlette routes (an
    included router is matched by its routes, in their order)."""
    scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": []}
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.FULL:
            return child["endpoint"]
    return None


def test_every_saga_part_is_routed_to_itself_with_a_plain_key(tmp_path: Path) -> None:
    app = create_app(Settings(topic_prefix="unit."), ApiSettings(tokens_file=tmp_path / "t.json"))
    routes = list(_flat(app.routes))
    parts = [r for r in routes if isinstance(r, Route) and ":key}/" in r.path]
    assert len(parts) >= 5, [r.path for r in parts]  # history, live, trace, approve, reject...
    for part in parts:
        path = re.sub(r"\{[^}]+\}", "k", part.path)
        for method in sorted(part.methods or ()):
            routed = _routed_to(routes, path, method)
            assert routed is part.endpoint, f"{method} {part.path} is routed to {routed}"
