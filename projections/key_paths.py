"""Saga keys in URL paths: any text but NUL, "/" and line breaks included.

A saga's key is its Kafka key, whatever its producer chose (a business key such as
``inv/2026/0001``). A link escapes the key whole (:func:`key_segment`: ``/`` as ``%2F``).

Starlette routes on the decoded path, where an escaped ``%2F`` is a "/" like any other: a key
ending in ``/history`` would be taken for the history of the shorter key. So under the routes
that take a key, :class:`EscapedSlashes` routes on the path decoded but for ``%2F`` and ``%25``
(an escaped "%", so that the text "%2F" in a key stays itself), and the ``key`` converter
decodes those two in the key alone. A key sent with a bare "/" still reaches its saga, unless
it ends in a part's name; the routes of a saga's parts (``/history``, ``/live``, ``/approve``)
are registered before the saga's own, which would take them as part of a longer key (a unit
test routes every part with a plain key to check it).
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

KEY_PARAMETERS = ("saga_key", "order_id")
KEYED_PREFIXES: set[str] = set()
"""The literal start of every route :func:`keyed` marked (``/sagas/``): where
:class:`EscapedSlashes` applies."""

KEY_TEXT = "any text, a `/` in it escaped as `%2F`"
"""How the API documents a key parameter (after its example)."""

_KEPT = re.compile(r"(%2[fF]|%25)")
_KEPT_DECODED = {"%2F": "/", "%25": "%"}


class SagaKeyConvertor(Convertor[str]):
    regex = "(?s:.+)"  # any character, line breaks too

    def convert(self, value: str) -> str:
        return _KEPT.sub(lambda m: _KEPT_DECODED[m.group().upper()], value)

    def to_string(self, value: str) -> str:
        return key_segment(value)


register_url_convertor("key", SagaKeyConvertor())


def keyed(path: str) -> str:
    """``path`` with its key parameter (``{saga_key}`` or ``{order_id}``) taking any text:
    ``/sagas/{saga_type}/{saga_key:key}``."""
    KEYED_PREFIXES.add(path.partition("{")[0])
    for name in KEY_PARAMETERS:
        path = path.replace(f"{{{name}}}", f"{{{name}:key}}")
    return path


def documented(route: str) -> str:
    """A keyed route as the API documents it (``{saga_key}``, without the converter)."""
    return route.replace(":key}", "}")


def key_segment(key: str) -> str:
    """``key`` as one segment of a URL's path: escaped whole, ``/`` too."""
    return quote(key, safe="")


def saga_page_url(saga_type: str, key: str) -> str:
    """The console page of a saga, its key escaped whole (``/`` too)."""
    return f"/console/sagas/{saga_type}/{key_segment(key)}"


def routing_path(raw_path: bytes) -> str:
    """The path to route on: ``raw_path`` decoded as Starlette's servers do, but for the
    escaped "/" and "%" (kept as ``%2F`` and ``%25``, for the ``key`` converter; a stray "%"
    of a malformed escape becomes ``%25`` too)."""
    pieces = _KEPT.split(raw_path.decode("ascii"))
    return "".join(
        unquote(p).replace("%", "%25") if i % 2 == 0 else p.upper() for i, p in enumerate(pieces)
    )


class EscapedSlashes:
    """ASGI middleware: requests under a keyed route routed on :func:`routing_path`, so that
    ``/sagas/order/a%2Fhistory`` is the saga keyed ``a/history``, not ``a``'s history."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(tuple(KEYED_PREFIXES)):
            scope = {**scope, "path": _path_to_route(scope)}
        await self.app(scope, receive, send)


def _path_to_route(scope: Scope) -> str:
    decoded: str = scope["path"]
    raw = scope.get("raw_path")
    if raw and b"%" in raw:
        with contextlib.suppress(UnicodeDecodeError):  # a server passing other bytes through
            path = routing_path(raw)
            if unquote(path) == decoded:  # the server's own decoding of the same bytes
                return path
    # Without the raw path: every "/" a separator, as Starlette has it; the key intact.
    return decoded.replace("%", "%25")
