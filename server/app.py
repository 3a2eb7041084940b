"""The FastAPI application: one router per resource, problem+json errors, a pooled database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from psycopg_pool import ConnectionPool, PoolTimeout

import aquami
from collector.floor_lag import DEFAULT_LAG
from server import db, sign_in_purge
from server.access_log import redact_access_log
from server.alerts.router import router as alerts_router
from server.billing.router import router as billing_router
from server.body_limit import BodyLimit
from server.care.router import router as care_router
from server.cors import Open311Cors
from server.database_away import DatabaseAway
from server.db import open_pool
from server.docs import install_docs
from server.gateways.router import router as gateways_router
from server.head import HeadAsGet
from server.hosts import AllowedHosts, allowed_host
from server.meters.router import router as meters_router
from server.open311.router import router as open311_router
from server.problem_docs import document_problems, problems
from server.problems import install_problem_handlers, refuse_nul_text
from server.query_params import KnownQueryRoute
from server.schema_check import SchemaCheck, not_migrated
from server.security_docs import document_security
from server.security_headers import SecurityHeaders
from server.web.alert_dismissal import router as web_alert_dismissal_router
from server.web.care_desk import router as web_care_desk_router
from server.web.enquiries import router as web_enquiries_router
from server.web.meter_page import router as web_meter_router
from server.web.meter_search import router as web_meter_search_router
from server.web.pages import error_page
from server.web.router import router as web_router

log = logging.getLogger(__name__)


def create_app(
    database_url: str,
    floor_lag_warning: timedelta = DEFAULT_LAG,
    asked: SchemaCheck | None = None,
    *,
    cors_origins: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
) -> FastAPI:
    """The application on ``database_url``; a billing pull whose next_changed_since is more than
    ``floor_lag_warning`` behind the database's clock warns, naming the transaction that holds it.
    ``asked``: what ``aquami server run`` found when it asked the database before starting the server
    (server.db.ask_at_start), so start-up asks once; None: the app asks as it starts.
    ``cors_origins``: the other sites whose pages may call Open311 (server.cors; none: CORS is off).
    ``allowed_hosts``: the names it answers for (server.hosts; none: any)."""
    redact_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.schema_check = asked if asked is not None else SchemaCheck()
        if asked is None:
            db.ask_at_start(database_url, app.state.schema_check)
        _refuse_an_unmigrated_database(app.state.schema_check)
        app.state.database_away = DatabaseAway()
        app.state.pool = open_pool(database_url, app.state.database_away)
        # ended sign-in sessions and old links go on a clock too, not only as someone signs in
        purging = asyncio.create_task(
            sign_in_purge.purging(app.state.pool, sign_in_purge.FIRST_PURGE_AFTER, sign_in_purge.PURGE_EVERY)
        )
        try:
            yield
        finally:
            purging.cancel()
            app.state.pool.close()

    app = FastAPI(
        title="aquami",
        version=aquami.__version__,
        summary="Meters, validated reads and customer services of a water utility.",
        lifespan=lifespan,
        docs_url=None,  # server.docs serves them, from this server's own files
        redoc_url=None,
        dependencies=[Depends(refuse_nul_text)],
    )
    app.router.route_class = KnownQueryRoute  # /health's, as every router's of the API
    app.state.floor_lag_warning = floor_lag_warning
    app.add_middleware(BodyLimit)  # before any route reads a body, or the API key is checked
    if cors_origins:  # outside BodyLimit: a page of an allowed origin can read its 413 too
        app.add_middleware(Open311Cors, origins=list(cors_origins))
    if allowed_hosts:  # outside both: a request for another host is refused before anything reads it
        hosts = [allowed_host(host) for host in allowed_hosts]
        app.add_middleware(AllowedHosts, allowed_hosts=hosts)
    app.add_middleware(SecurityHeaders)  # outside those: their answers (413, a preflight, 400) carry them too
    app.add_middleware(HeadAsGet)  # outside all: a HEAD's answer is its GET's, headers and all
    install_problem_handlers(app, error_page)
    app.include_router(meters_router)
    app.include_router(alerts_router)
    app.include_router(gateways_router)
    app.include_router(billing_router)
    app.include_router(care_router)
    app.include_router(open311_router)
    app.include_router(web_router)
    app.include_router(web_care_desk_router)
    app.include_router(web_enquiries_router)
    app.include_router(web_alert_dismissal_router)
    app.include_router(web_meter_router)
    app.include_router(web_meter_search_router)
    install_docs(app)
    document_problems(app)
    document_security(app)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "web" / "static")), name="static")

    @app.get(
        "/health",
        tags=["operations"],
        responses=problems({503: "The database is not migrated for this aquami"}),
        summary="Liveness: the process answers (503 while its database is not migrated)",
        description='`{"status": "ok"}`; with `"database": "unavailable"` while the server has not reached'
        " its database yet (still 200: the process is alive, and restarting it would not bring the database).",
    )
    def health(request: Request) -> dict[str, str]:
        if _database_reached(request.app.state.pool, request.app.state.schema_check):
            return {"status": "ok"}
        return {"status": "ok", "database": "unavailable"}

    return app


def _database_reached(pool: ConnectionPool, schema: SchemaCheck) -> bool:
    """/health's view of the database. True: found migrated (now or before). False: not reachable
    within HEALTH_WAIT_S, /health still 200 (the server serves it once it is back: a host's boot order
    is not fatal), saying so. 503 raised once the server has found it not migrated, the state start-up
    refuses; asked again here until a check passes, so /health recovers with the migration."""
    if schema.passed:  # the usual case: liveness costs no round trip to the database
        return True
    try:
        with db.lent(pool, db.HEALTH_WAIT_S) as conn:
            schema.require(conn)
    except (PoolTimeout, psycopg.OperationalError):
        if schema.problem is not None:
            raise not_migrated(schema.problem) from None
        return False
    return True


def _refuse_an_unmigrated_database(schema: SchemaCheck) -> None:
    """Start-up stops on a database the migrations have not been applied to: the server would answer
    500 to every keyed request (relation "api_keys" does not exist) while its /health said ok.
    A database not reachable (refusing, or mute for db.STARTUP_WAIT_S) is let be, and the server
    listens at once: requests are answered 503 until it is there, and a host's boot order is not
    fatal; the first connection a request gets then asks (server.schema_check).
    docker-compose.yml starts the server only once its migrate service has finished."""
    if schema.problem is not None:
        log.error(schema.problem)
        raise RuntimeError(schema.problem)
