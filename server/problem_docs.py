"""The OpenAPI document's side of the problems: every error status an operation can answer, declared
as the ``Problem`` it is, with a line saying when.

Some come from what every route, or a route's dependencies, does: any query or path value is refused
with a NUL character (400, ``refuse_nul_text``), and a query parameter the operation does not take,
or one of its own given more than once (400, :class:`server.query_params.QueryParameters`), a key is
asked (401, 403: ``RoleRequired``), a connection is lent (503: ``get_connection``), a body is capped
(413: ``BodyLimit``, on every request, a GET's as well) and validated (422; a JSON body read, too:
server.exact_json), and any unexpected error is a 500. Those are found by walking
each route's dependencies, so a new route gets them as it gets the dependency. What a route's own
code raises (404 for an unknown id, 409 for a conflict, a 400 of its own) it declares itself, with
:func:`problems`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from server.auth import RoleRequired
from server.body_limit import MAX_BODY_BYTES
from server.db import get_connection
from server.exact_json import ExactJsonRoute
from server.problems import PROBLEM_JSON, refuse_nul_text
from server.query_params import QueryParameters

#: The problem document every error is (RFC 9457 members, and ``errors`` for a request's invalid fields).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what was wrong, in a sentence"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["location", "message"],
                "properties": {"location": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "table": {"type": "string", "description": "a value too long for an index (422): the index's table"},
        "index": {"type": "string", "description": "a value too long for an index (422): the index"},
        "columns": {
            "type": "array",
            "items": {"type": "string"},
            "description": "a value too long for an index (422): the index's text columns, one of them too long",
        },
    },
}
_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}

NUL_TEXT = "a path or query value holds a NUL character"
UNKNOWN_QUERY = "a query parameter the operation does not take (the problem names those it takes)"
#: Said where the operation takes a parameter of its own: one it reads one value of.
REPEATED_QUERY = "one of its query parameters given more than once"
INVALID = "Invalid request: a problem document naming each invalid field"
#: An operation taking a JSON body (server.exact_json) also says why one cannot be read, at ``body``.
INVALID_BODY = (
    "Invalid request: a problem document naming each invalid field (as query/limit, body/reason), a member "
    "an object names twice among them, or, at body, why the body cannot be read: not JSON, not UTF-8, "
    "or sent as another type than JSON"
)
#: An operation using the database may meet a stored value too long for an index (server.too_long).
TOO_LONG = "or a value too long for one of the database's indexes (table, index, columns)"
NO_KEY = "No API key, or not a valid one (WWW-Authenticate: Bearer)"
TOO_LARGE = f"The request body is over {MAX_BODY_BYTES // 1024} KiB"
#: An operation taking no body still has its request's capped (BodyLimit, before routing): a GET
#: declaring, or sending, a body over the cap is a 413 too.
TOO_LARGE_UNASKED = f"{TOO_LARGE}: this operation takes none, but the cap is on every request's"
UNEXPECTED = "An unexpected error (logged), or a setting of the server's that cannot be used"
DATABASE_AWAY = "The database is unavailable (Retry-After: try again), or not migrated for this aquami"
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds; absent when waiting will not help", "schema": {"type": "string"}}},
}


def problem_response(description: str, status: int | None = None) -> dict[str, Any]:
    """An OpenAPI response object: ``description``, as a problem document (its own copy: a reader of
    the document, as schemathesis, may resolve its references in place)."""
    response: dict[str, Any] = {"description": description, "content": copy.deepcopy(_CONTENT)}
    if status in _HEADERS:
        response["headers"] = copy.deepcopy(_HEADERS[status])
    return response


def problems(declared: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: the error statuses its own code answers, each with when."""
    return {status: problem_response(description, status) for status, description in declared.items()}


def key_problems(*allowed: str) -> dict[int, str]:
    """401 and 403, for an operation taking keys with one of ``allowed`` roles (or admin)."""
    return {401: NO_KEY, 403: f"The key has none of the roles this needs: {', '.join(sorted({*allowed, 'admin'}))}"}


def dependencies(dependant: Dependant) -> Iterator[Any]:
    """Every callable ``dependant`` depends on, however deep."""
    for sub in dependant.dependencies:
        yield sub.call
        yield from dependencies(sub)


def key_roles(calls: Iterable[Any]) -> list[str]:
    """The roles the key dependencies (:class:`RoleRequired`) among ``calls`` admit; none when the
    route asks no key."""
    return [role for call in calls if isinstance(call, RoleRequired) for role in call.allowed]


def schema_operations(app: FastAPI, spec: dict[str, Any]) -> Iterator[tuple[RouteContext, dict[str, Any]]]:
    """Each route of ``app`` the document shows (those of included routers too, as served), with each
    of its operations in ``spec``."""
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and route.include_in_schema:
            for method in route.methods or ():
                yield route, spec["paths"][route.path_format][method.lower()]


def rewrite_openapi(app: FastAPI, rewrite: Callable[[dict[str, Any]], None]) -> None:
    """Have ``app.openapi()`` hand out its document rewritten by ``rewrite``, in place, once: FastAPI
    keeps the document it built (until a route is added) and serves it on every /openapi.json."""
    build = app.openapi
    rewritten: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        spec = build()
        if not rewritten or rewritten[0] is not spec:
            rewrite(spec)
            rewritten[:] = [spec]
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def generic_problems(route: RouteContext) -> dict[int, str]:
    """The errors ``route`` answers by what it depends on, and by what every route is."""
    calls = list(dependencies(route.dependant))
    found: dict[int, str] = {500: UNEXPECTED}
    said = [NUL_TEXT] if refuse_nul_text in calls else []
    for check in (call for call in calls if isinstance(call, QueryParameters)):
        said.append(UNKNOWN_QUERY)
        said += [REPEATED_QUERY] if any(name not in check.repeatable for name in check.takes) else []
    if said:
        found[400] = f"Bad request: {'; or '.join(said)}"
    keyed = key_roles(calls)
    if keyed:
        found.update(key_problems(*keyed))
    if get_connection in calls:
        found[503] = DATABASE_AWAY
    found[413] = TOO_LARGE if route.body_field is not None else TOO_LARGE_UNASKED
    return found


def _merge(operation: dict[str, Any], route: RouteContext) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "422" in responses:
        reads_json = isinstance(route.original_route, ExactJsonRoute) and route.body_field is not None
        uses_database = get_connection in dependencies(route.dependant)
        invalid = INVALID_BODY if reads_json else INVALID
        responses["422"] = problem_response(f"{invalid}; {TOO_LONG}" if uses_database else invalid)
    for status, description in generic_problems(route).items():
        own = responses.get(str(status))
        if own is None:
            responses[str(status)] = problem_response(description, status)
        elif status == 400 and NUL_TEXT not in own["description"]:  # its own 400s, and the generic ones
            own["description"] = f"{own['description']}; or {description.removeprefix('Bad request: ')}"
    operation["responses"] = dict(sorted(responses.items()))


def document_problems(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document declare every error status each operation answers, as the
    problem documents they are.

    FastAPI documents only the 422, as ``application/json`` HTTPValidationError (``detail`` a list),
    where the handlers answer ``application/problem+json`` with ``detail`` a sentence; and none of the
    401, 403, 404, 409… the API sends: a client generated from the document had no type for them, or
    misread them. Call after the routes are included."""

    def rewrite(spec: dict[str, Any]) -> None:
        for route, operation in schema_operations(app, spec):
            _merge(operation, route)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Problem"] = copy.deepcopy(PROBLEM_SCHEMA)

    rewrite_openapi(app, rewrite)
