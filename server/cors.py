"""Which other sites' pages may call Open311 from a browser (CORS), when the server is told so.

A customers' app written as a web page (https://app.example.org) calls /open311/v2 from another
origin than the server's: the browser sends its ``POST`` (JSON, or with ``Authorization`` or
``Idempotency-Key``) only after a preflight ``OPTIONS`` is answered with the origin allowed, and
lets the page read an answer only when it carries ``Access-Control-Allow-Origin``. Off by default: no
answer carries it, and a preflight is a 405. ``aquami server run --cors-origin https://app.example.org``
(one per origin) turns it on for those origins, on the Open311 paths only: the rest of the API and
the web page stay same-origin (the care desk signs in with a cookie, which no other site may use).

Starlette's ``CORSMiddleware`` does the work; :class:`Open311Cors` only scopes it to the paths, and
a refused preflight is answered in problem+json (:class:`ProblemCors`) as every other error of the
API, where Starlette answered plain text ``Disallowed CORS origin``.
Credentials are never allowed: Open311 takes its key from the form's ``api_key`` or a header, never
the cookie, so no ``Access-Control-Allow-Credentials`` is sent, and ``*`` is refused: each origin is
named, so the server's configuration says which web apps call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from server.origins import DEFAULT_PORTS
from server.problems import RefusedBeforeRouting

#: The paths CORS is answered on (server.open311.router's PREFIX, and everything under it).
OPEN311_PATHS = "/open311/"
#: What a page of an allowed origin may send: Open311's methods, and the headers its app sets (the
#: key's two, the retry's id, and a JSON body's type; a form's type needs no preflight).
METHODS = ("GET", "HEAD", "POST")
HEADERS = ("Authorization", "X-API-Key", "Idempotency-Key", "Content-Type")
#: How long a browser may keep a preflight's answer (seconds): Starlette's default.
PREFLIGHT_MAX_AGE = 600


def allowed_origin(text: str) -> str:
    """``text`` as the origin a browser sends for a page there (``https://app.example.org``, its scheme
    and host lowercased, a default port left out); ValueError saying why it is none: ``*``, a path,
    a scheme other than http or https."""
    given = text.strip()
    if given == "*":
        raise ValueError(
            "'*' is refused: name each origin of the app's pages (https://app.example.org), one "
            "--cors-origin each, so the configuration says which sites call Open311"
        )
    try:
        parts = urlsplit(given)
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has no valid port") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(
            f"{text!r} is no origin: an http:// or https:// address of the app's pages, as https://app.example.org"
        )
    if (
        parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            f"{text!r} is no origin: the scheme, host and port alone (https://app.example.org), without a path"
        )
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 address, written in brackets in an origin
        host = f"[{host}]"
    return f"{scheme}://{host}" if port is None or port == DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


#: How Starlette's plain-text refusal of a preflight begins, before the parts it refuses.
_STARLETTE_REFUSAL = "Disallowed CORS "


class ProblemCors(CORSMiddleware):
    """Starlette's ``CORSMiddleware``, its refusal of a preflight (400) a problem document saying what
    was refused (the origin, the method, a header) and what is allowed, with the headers Starlette
    sends with it."""

    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        text = bytes(answer.body).decode()
        if answer.status_code != 400 or not text.startswith(_STARLETTE_REFUSAL):
            return answer
        refused = text.removeprefix(_STARLETTE_REFUSAL).split(", ")
        detail = "; ".join(_refused(part, request_headers) for part in refused)
        headers = {
            name: value for name, value in answer.headers.items() if name not in ("content-length", "content-type")
        }
        return RefusedBeforeRouting(400, detail, title="Cross-origin request refused", headers=headers)


def _refused(part: str, request_headers: Headers) -> str:
    """What Starlette names refused (``origin``, ``method``, ``headers``, ``private-network``), in words."""
    if part == "origin":
        return (
            f"the origin {request_headers.get('origin')!r} may not call Open311 from a browser: the origins "
            "allowed are set by aquami server run --cors-origin (AQUAMI_CORS_ORIGINS)"
        )
    if part == "method":
        return (
            f"the method {request_headers.get('access-control-request-method')!r} is not one a page may send "
            f"({', '.join(METHODS)})"
        )
    if part == "headers":
        return (
            f"the headers {request_headers.get('access-control-request-headers')!r} are not all ones a page may "
            f"send ({', '.join(HEADERS)})"
        )
    if part == "private-network":
        return "a page may not call the server as one on a private network (Access-Control-Request-Private-Network)"
    return f"refused: {part}"


class Open311Cors:
    """:class:`ProblemCors` for the Open311 paths, the rest passed by untouched (pure ASGI:
    a streamed body passes through as it comes)."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = ProblemCors(
            app,
            allow_origins=[allowed_origin(origin) for origin in origins],
            allow_methods=METHODS,
            allow_headers=HEADERS,
            allow_credentials=False,
            max_age=PREFLIGHT_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(OPEN311_PATHS):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
