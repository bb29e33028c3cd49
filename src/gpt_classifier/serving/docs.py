"""What the server shows people, offline: the web page at ``/`` (plain HTML, CSS and JavaScript
in ``page/``, no build step) and Swagger UI at ``/docs`` (FastAPI's default page loads it from a
CDN; here ``swagger-ui-bundle-v2``'s files, Swagger UI 5 for OpenAPI 3.1, come from this server).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE_DIR = Path(__file__).with_name("page")
DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
# Never framed, never sniffed; the page runs only its own files (no inline script or style, no
# eval), so an injected <script> in a text shown could not run.
FRAME_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}
PAGE_HEADERS = FRAME_HEADERS | {
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
}


def add_page(app: FastAPI) -> None:
    index = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    app.mount("/page", StaticFiles(directory=str(PAGE_DIR)), name="page-assets")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index, headers=PAGE_HEADERS)


def add_offline_docs(app: FastAPI) -> None:
    """Serve Swagger UI for ``app``; the app must be built with ``docs_url=None``."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(ASSETS_URL, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # root_path: the prefix a reverse proxy mounts the app under.
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png",
            oauth2_redirect_url=None,  # no OAuth here
        )
        page.headers.update(FRAME_HEADERS)  # Swagger UI's page has an inline script: no CSP
        return page
