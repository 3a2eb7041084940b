"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), from this server alone.

FastAPI's own pages load Swagger UI and ReDoc from a CDN by a floating major version
(``swagger-ui-dist@5``, ``redoc@2``) with no integrity check, and ReDoc's fonts from Google: a script
changed there ran on the origin whose cookie signs the API's writes, and passed the API's checks for
another site, and the pages were blank on a utility network without internet. The same files come
from the ``fastapi-offline`` package, pinned in pyproject.toml and constraints.txt, served at
:data:`ASSETS`. Each page's Content-Security-Policy runs only those files and the page's own start-up
script (by its hash), and lets no page frame it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where Swagger UI's and ReDoc's files are served from.
ASSETS = "/docs-assets"

#: Swagger UI without its online validator's badge, an image from validator.swagger.io.
_SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None}

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def install_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc on ``app``, made with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def swagger_ui() -> HTMLResponse:
        return _guarded(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS}/favicon.png",
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), **_SWAGGER_UI_PARAMETERS},
            )
        )

    @app.get("/redoc", include_in_schema=False, response_class=HTMLResponse)
    def redoc() -> HTMLResponse:
        return _guarded(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )


def _guarded(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = docs_policy(bytes(page.body).decode())
    return page  # X-Frame-Options and the rest: server.security_headers


def docs_policy(html: str) -> str:
    """What a documentation page may load and run: scripts of this server and its own inline ones
    (by hash); styles of this server and inline ones (ReDoc and Swagger UI write their own); images
    of this server or data: URLs (Swagger UI's icons); requests to this server only; no frame."""
    hashes = " ".join(f"'sha256-{_sha256(script)}'" for script in _INLINE_SCRIPT.findall(html))
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' {hashes}".rstrip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
