"""The FastAPI application: one router per resource, problem+json errors, a pooled database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

import aquami
from server.access_log import redact_access_log
from server.alerts.router import router as alerts_router
from server.billing.router import router as billing_router
from server.body_limit import BodyLimit
from server.care.router import router as care_router
from server.db import open_pool
from server.gateways.router import router as gateways_router
from server.meters.router import router as meters_router
from server.problems import install_problem_handlers, refuse_nul_text
from server.web.router import router as web_router


def create_app(database_url: str) -> FastAPI:
    redact_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = open_pool(database_url)
        try:
            yield
        finally:
            app.state.pool.close()

    app = FastAPI(
        title="aquami",
        version=aquami.__version__,
        summary="Meters, validated reads and customer services of a water utility.",
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul_text)],
    )
    app.add_middleware(BodyLimit)  # before any route reads a body, or the API key is checked
    install_problem_handlers(app)
    app.include_router(meters_router)
    app.include_router(alerts_router)
    app.include_router(gateways_router)
    app.include_router(billing_router)
    app.include_router(care_router)
    app.include_router(web_router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "web" / "static")), name="static")

    @app.get("/health", tags=["operations"], summary="Liveness: the process answers")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
