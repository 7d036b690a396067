"""The API's interactive docs (Swagger UI at ``/docs``), served by the API itself.

FastAPI's own page loads Swagger UI from a CDN, so on a machine without internet access
``/docs`` was a blank page. This is FastAPI's documented self-hosting, with the assets of the
``fastapi-swagger`` distribution (Swagger UI's release files, kept current there) instead of
files copied into this repository.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS = "/docs"
ASSETS = f"{DOCS}/assets"


def mount_docs(app: FastAPI) -> None:
    """Serve Swagger UI at :data:`DOCS` over the app's OpenAPI document, its script and
    stylesheet from :data:`ASSETS` (create the app with ``docs_url=None``)."""
    assets = files("fastapi_swagger") / "resources"
    app.mount(ASSETS, StaticFiles(directory=str(assets)), name="swagger-ui")

    async def swagger_ui() -> HTMLResponse:
        assert app.openapi_url is not None
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} · docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

    app.add_api_route(DOCS, swagger_ui, methods=["GET"], include_in_schema=False)
