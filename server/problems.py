"""Errors as ``application/problem+json`` (RFC 9457), for every error the API returns."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.methods import allowed_methods, route_path
from server.security_headers import security_headers

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, title: str | None = None, type_: str = "about:blank", **extra: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type_
        self.extra = extra
        self.headers: dict[str, str] = {}


#: What a 503 asks a client to wait before trying again (RFC 9110 Retry-After, seconds).
RETRY_AFTER_S = 5


def database_unavailable(detail: str) -> Problem:
    """503 with Retry-After: the database away (restarting, failing over) or every connection busy."""
    problem = Problem(503, detail, title="Database unavailable")
    problem.headers["Retry-After"] = str(RETRY_AFTER_S)
    return problem


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def method_not_allowed(request: Request, allowed: list[str]) -> Problem:
    """405 with ``Allow``: the methods the path serves (:func:`server.methods.allowed_methods`)."""
    listed = ", ".join(allowed)
    problem = Problem(405, f"{request.method} is not served at {route_path(request)}; it serves {listed}")
    problem.headers["Allow"] = listed
    return problem


def refuse_nul_text(request: Request) -> None:
    """A dependency of every route: PostgreSQL text cannot hold NUL (U+0000), so a path or query
    value holding one names nothing stored; it is refused before a query would fail on it."""
    query = [text for pair in request.query_params.multi_items() for text in pair]
    for where, values in (("path", list(request.path_params.values())), ("query", query)):
        if any(isinstance(value, str) and "\x00" in value for value in values):
            raise Problem(400, f"a {where} parameter holds a NUL character (U+0000)", title="Invalid character")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.detail, title=exc.title, type_=exc.type, headers=exc.headers or None, **exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405 and (allowed := allowed_methods(request)):  # Starlette's names one route's
            return await _problem(request, method_not_allowed(request, allowed))
        return problem_response(request, exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"location": "/".join(str(p) for p in error.get("loc", ())), "message": error.get("msg", "")}
            for error in exc.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors) or "invalid request"
        return problem_response(request, 422, detail, title="Invalid request", errors=errors)

    @app.exception_handler(psycopg.OperationalError)
    async def _database_away(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        # the connection was lost during the request (a restart, a failover)
        log.warning("database error on %s: %s", request.url.path, exc)
        return await _problem(request, database_unavailable("the database connection was lost; try again shortly"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        # Starlette answers this from its ServerErrorMiddleware, outside every middleware of the app:
        # the security headers are set here, or the 500 would go without them
        headers = security_headers(str(request.scope["path"]))
        return problem_response(request, 500, "an unexpected error occurred; it has been logged", headers=headers)
