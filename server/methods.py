"""Which methods a path serves, for a 405's ``Allow`` (RFC 9110 §15.5.6: the target's supported methods).

Starlette answers a method a path does not serve with 405, but its ``Allow`` names only the methods
of the first route whose path matched: ``DELETE /meters/A/readings`` said ``Allow: GET``, where
``POST`` is served there too. And Open311's catch-all (its 404 for a resource aquami does not serve)
took ``PUT /open311/v2/requests.json`` for one, a 404. HEAD is listed wherever GET is (server.head).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Request
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute


def route_path(request: Request) -> str:
    """The request's path as the routes see it (without the ``root_path`` a proxy mounts the app at)."""
    path, root = str(request.scope["path"]), str(request.scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def served_methods(routes: Sequence[BaseRoute], path: str, *, besides: Callable[..., Any] | None = None) -> set[str]:
    """Every method some route of ``routes`` serves at ``path`` (but the route of ``besides``), HEAD
    with GET (server.head answers it); empty when no route's path matches (a mount's files)."""
    methods: set[str] = set()
    for route in iter_route_contexts(routes):
        pattern = getattr(route, "path_regex", None)
        if route.methods and pattern is not None and route.endpoint is not besides and pattern.match(path):
            methods |= route.methods
    return methods | {"HEAD"} if "GET" in methods else methods


def allowed_methods(request: Request, *, besides: Callable[..., Any] | None = None) -> list[str]:
    """Every method some route of the app serves at the request's path (but the route of ``besides``:
    a catch-all), sorted; empty when no route's path matches (a mount's files: it answers itself)."""
    return sorted(served_methods(request.app.routes, route_path(request), besides=besides))
