"""HEAD answered wherever GET is: the GET's status and headers, without its body (RFC 9110 §9.3.2).

Starlette's own routes add HEAD to GET, FastAPI's do not: ``HEAD /meters`` was a 405 with
``Allow: GET``. Declaring HEAD on every route would double each operation in the OpenAPI document;
this middleware instead hands a HEAD on to the app as the GET of the same path (the request's
scope copied, so the access log still says HEAD) and drops the body from the answer. Its
``Content-Length`` stays the GET's, as RFC 9110 allows. A path with no GET (a POST-only one) is left
alone: its 405 lists what it serves (server.methods). The GET is run whole: a HEAD on a NEM12 export
costs what the GET does.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.methods import route_path, served_methods


class HeadAsGet:
    """Pure ASGI (no ``BaseHTTPMiddleware``): nothing is buffered, a streamed body is dropped as it comes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or not _serves_get(scope):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def _serves_get(scope: Scope) -> bool:
    return "GET" in served_methods(scope["app"].routes, route_path(Request(scope)))
