"""Saga keys in URL paths: any text but NUL, "/" and line breaks included.

A saga's key is its Kafka key, whatever its producer chose (a business key such as
``inv/2026/0001``). Starlette routes on the decoded path, where an escaped ``%2F`` is a "/" again,
and its ``path`` converter stops at a line break; the ``key`` converter registered here takes
every character. The routes of a saga's parts (``/history``, ``/live``, ``/approve``) are
registered before the saga's own, which would take them as part of a longer key.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.convertors import Convertor, register_url_convertor

KEY_PARAMETERS = ("saga_key", "order_id")


class SagaKeyConvertor(Convertor[str]):
    regex = "(?s:.+)"  # any character, line breaks too

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("key", SagaKeyConvertor())


def keyed(path: str) -> str:
    """``path`` with its key parameter (``{saga_key}`` or ``{order_id}``) taking any text:
    ``/sagas/{saga_type}/{saga_key:key}``."""
    for name in KEY_PARAMETERS:
        path = path.replace(f"{{{name}}}", f"{{{name}:key}}")
    return path


def documented(route: str) -> str:
    """A keyed route as the API documents it (``{saga_key}``, without the converter)."""
    return route.replace(":key}", "}")


def saga_page_url(saga_type: str, key: str) -> str:
    """The console page of a saga, its key escaped whole (``/`` too)."""
    return f"/console/sagas/{saga_type}/{quote(key, safe='')}"
