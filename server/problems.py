"""Errors as ``application/problem+json`` (RFC 9457), for every error the API returns; a page's (a
route answering HTML, server.web), and a browser's for an address no route matches, as a page saying
the same, as a browser shows no JSON."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from server.accept import prefers_html
from server.methods import allowed_methods, route_path
from server.security_headers import security_headers
from server.words import WORDS_PATTERN

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


class RefusedBeforeRouting(JSONResponse):
    """A problem document a middleware answers with, before any route runs (a ``Host`` not served, a
    CORS preflight refused): it has no :class:`Request` to build it with, so the ``instance`` (the
    request's path) is filled in when it is sent. Before, those two answers were Starlette's plain
    text, where every other error of the API is problem+json."""

    def __init__(self, status: int, detail: str, *, title: str, headers: dict[str, str] | None = None) -> None:
        self.problem = {"type": "about:blank", "title": title, "status": status, "detail": detail}
        self.given_headers = dict(headers or {})
        super().__init__(self.problem, status_code=status, media_type=PROBLEM_JSON, headers=self.given_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {**self.problem, "instance": str(scope.get("path", ""))}
        answer = JSONResponse(body, status_code=self.status_code, media_type=PROBLEM_JSON, headers=self.given_headers)
        await answer(scope, receive, send)


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


#: A page saying why a request to a page was refused: the request, the status, the detail (a sentence),
#: the headers the problem document would carry.
ErrorPage = Callable[[Request, int, str, dict[str, str] | None], Response]


def is_page(request: Request) -> bool:
    """Whether the request was routed to a page: a route whose answers are HTML (server.web's routers,
    the API's documentation pages)."""
    return getattr(request.scope.get("route"), "response_class", None) is HTMLResponse


def is_unrouted_page_request(request: Request) -> bool:
    """Whether the request matched no route (a mistyped page address: ``/care/nothing``, ``/meterz``)
    and its ``Accept`` ranks HTML above JSON, as a browser's does: its 404 is a page, with a link
    to the start page, where the raw JSON problem was shown before. An API client (``Accept:
    application/json``, curl's ``*/*``, none) still gets problem+json."""
    return "route" not in request.scope and prefers_html(request.headers.get("accept"))


def install_problem_handlers(app: FastAPI, page: ErrorPage | None = None) -> None:
    """Answer every error in problem+json; one refusing a page's request, by ``page`` when given.

    Before, a page's request refused before its own code ran (a NUL in its address, refused for every
    route by :func:`refuse_nul_text`; a form field missing) was answered in problem+json, which a
    browser shows as raw JSON."""

    def answer(
        request: Request,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        said: str | None = None,
        **problem: Any,
    ) -> Response:
        """``said``: the detail in a page's words, when they differ."""
        if page is not None and (is_page(request) or is_unrouted_page_request(request)):
            return page(request, status, said or detail, headers)
        return problem_response(request, status, detail, headers=headers, **problem)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return answer(
            request, exc.status, exc.detail, exc.headers or None, title=exc.title, type_=exc.type, **exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        detail = str(exc.detail)
        said = None
        if exc.status_code == 404 and "route" not in request.scope:  # no route matched the address
            said = "there is no page at this address"
        if exc.status_code == 405:  # a page's address typed, as GET /logout
            said = f"this address is not opened with {request.method}: use the page's links and buttons"
            if allowed := allowed_methods(request):  # Starlette's Allow names one route's methods only
                refusal = method_not_allowed(request, allowed)
                headers, detail = {**(headers or {}), **refusal.headers}, refusal.detail
        return answer(request, exc.status_code, detail, headers, said=said)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"location": "/".join(str(p) for p in error.get("loc", ())), "message": _message(error)}
            for error in exc.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors) or "invalid request"
        said = "; ".join(f"{_in_words(error.get('loc', ()))}: {_message(error)}" for error in exc.errors())
        return answer(request, 422, detail, said=said or None, title="Invalid request", errors=errors)

    from server.too_long import indexed_text_columns, value_too_long  # it raises this module's Problem

    @app.exception_handler(psycopg.errors.ProgramLimitExceeded)
    def _too_long(request: Request, exc: psycopg.errors.ProgramLimitExceeded) -> Response:
        # an OperationalError to psycopg, but no lost connection: a 503 had the client retry for ever.
        # Not async: asking the index's columns waits on the database (Starlette runs it in a thread)
        index = exc.diag.constraint_name
        columns = (
            [] if index is None else indexed_text_columns(getattr(app.state, "pool", None), exc.diag.schema_name, index)
        )
        problem = value_too_long(exc, columns)
        log.warning("value too long for the database on %s: %s", request.url.path, exc.diag.message_primary)
        return answer(request, problem.status, problem.detail, title=problem.title, **problem.extra)

    @app.exception_handler(psycopg.OperationalError)
    async def _database_away(request: Request, exc: psycopg.OperationalError) -> Response:
        # the connection was lost during the request (a restart, a failover)
        log.warning("database error on %s: %s", request.url.path, exc)
        return await _problem(request, database_unavailable("the database connection was lost; try again shortly"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        # Starlette answers this from its ServerErrorMiddleware, outside every middleware of the app:
        # the security headers are set here, or the 500 would go without them
        headers = security_headers(str(request.scope["path"]), request.url.scheme)
        return answer(request, 500, "an unexpected error occurred; it has been logged", headers)


#: What a person's words (server.words) that are none are told, in place of pydantic's "String
#: should match pattern '^[^\\x00]*[^\\W_][^\\x00]*$'", which a person cannot read.
NO_WORDS = "needs a word (a letter or a digit), not only blanks, marks or invisible characters, and no NUL character"


def _message(error: Any) -> str:
    """pydantic's message for an invalid value, the words one's in words, or a check's own words
    without pydantic's "Value error, " before them (``'20261102' is no ISO 8601 time``)."""
    context = error.get("ctx") or {}
    if error.get("type") == "string_pattern_mismatch" and context.get("pattern") == WORDS_PATTERN:
        return NO_WORDS
    if error.get("type") == "value_error" and "error" in context:
        return str(context["error"])
    return str(error.get("msg", ""))


def _in_words(location: Any) -> str:
    """Where a request's invalid value is, for a person: ``("body", "key")`` is "the form's key"."""
    where, *names = [str(part) for part in location] or ["request"]
    whose = {"body": "the form's", "query": "the address's", "path": "the address's"}.get(where, f"the {where}'s")
    return f"{whose} {' '.join(names)}".strip() if names else f"the {where}"
