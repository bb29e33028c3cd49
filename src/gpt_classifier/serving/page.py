"""The web page at ``/``: plain HTML, CSS and JavaScript in ``page/``, no build step, nothing
fetched from elsewhere; it talks to the same API as any client."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE_DIR = Path(__file__).with_name("page")
ASSETS_URL = "/page"


def add_page(app: FastAPI) -> None:
    index = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    app.mount(ASSETS_URL, StaticFiles(directory=str(PAGE_DIR)), name="page-assets")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index)
