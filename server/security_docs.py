"""The OpenAPI document's side of the API keys: how a key is presented, as ``components.securitySchemes``,
and which operations need one, as each operation's ``security`` (with the roles it admits, ``x-roles``).

A route depending on :class:`server.auth.RoleRequired` takes the key wherever
:func:`server.auth.presented_key` finds it: ``Authorization: Bearer``, ``X-API-Key``, or the web page's
cookie (a sign-in session there, and only there). Open311's keyed routes check the key in their
handlers, in the headers only (and, for a POST, the form's ``api_key`` field, which OpenAPI cannot
name as a scheme): they declare it with :func:`key_security` as their ``openapi_extra``. Every other
operation is declared public (``security: []``). Without this, a client generated from the document
(the billing system's) did not know to send a key at all.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from server.auth import KEY_PREFIX, SESSION_COOKIE
from server.problem_docs import dependencies, key_roles, rewrite_openapi, schema_operations

BEARER, HEADER, COOKIE = "bearerKey", "apiKeyHeader", "webPageCookie"
SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": f"{KEY_PREFIX}<id>.<secret>",
        "description": "An API key (aquami server create-key): Authorization: Bearer aqk_<id>.<secret>",
    },
    HEADER: {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same key in X-API-Key (Authorization: Bearer is read first)",
    },
    COOKIE: {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": (
            "The web page's sign-in cookie, a session (aqs_…, set by signing in at /login; refused as a Bearer "
            "key or X-API-Key): a write signed by it alone must come from the web page"
        ),
    },
}
#: Where a route of :class:`RoleRequired` finds the key (any one of them).
API_KEY = (BEARER, HEADER, COOKIE)
#: Where Open311's handlers find it: never the cookie (a form another site posts would carry it).
HEADER_KEY = (BEARER, HEADER)


def key_security(*allowed: str, schemes: tuple[str, ...] = API_KEY) -> dict[str, Any]:
    """An operation's ``security`` (any one of ``schemes``) and ``x-roles`` (``allowed`` and admin):
    a route's ``openapi_extra`` when its handler checks the key itself."""
    return {"security": [{scheme: []} for scheme in schemes], "x-roles": sorted({*allowed, "admin"})}


def document_security(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document declare the key schemes, and each operation's requirement.
    Call after the routes are included (and after :func:`server.problem_docs.document_problems`)."""

    def rewrite(spec: dict[str, Any]) -> None:
        for route, operation in schema_operations(app, spec):
            roles = key_roles(dependencies(route.dependant))
            if roles:
                operation.update(key_security(*roles))
            else:
                operation.setdefault("security", [])  # public, unless its route declared otherwise
        spec.setdefault("components", {})["securitySchemes"] = copy.deepcopy(SCHEMES)

    rewrite_openapi(app, rewrite)
