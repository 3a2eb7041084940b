"""The headers every response carries, set once here rather than route by route.

- ``Cache-Control: no-store`` on everything but the files every visitor gets alike (:data:`PUBLIC_FILES`):
  what a key, a cookie or a sign-in link's key was answered (a meter's readings, the open alerts the
  page links to, the "Sign in as …?" page holding the key) is not kept for Back after sign-out on a
  shared care-desk PC. Before, only the web page's HTML was; the JSON its links open was not.
- ``X-Frame-Options: DENY`` and a ``Content-Security-Policy`` with ``frame-ancestors 'none'``: no
  page of another site frames the care desk's buttons. The policy is :data:`POLICY` unless the
  response has its own (the documentation pages, server.docs). The web page has no script and no
  inline style: its stylesheet, its forms to this server and its ``<meta http-equiv="refresh">``
  are all it needs.
- ``X-Content-Type-Options: nosniff``: a body is read only as the type it is sent as.
- ``Referrer-Policy: same-origin``: a ``/login?key=`` address is never sent to another site as a
  ``Referer``. Not ``no-referrer``: with it a browser sends a form's POST with ``Origin: null``, which
  the sign-in's check for another site (server.origins) refuses.
- ``Strict-Transport-Security`` on a response over https (behind a TLS proxy the server believes,
  ``X-Forwarded-Proto: https``): the browser then never asks this host over plain HTTP for a year,
  so a network in the way cannot answer a typed ``http://`` address with its own sign-in form and
  take the key typed into it. Before, a server behind TLS sent none, and the first request of each
  visit could go out in the clear. Not over plain HTTP (RFC 6797 section 7.2), and without
  ``includeSubDomains``: the utility's other hosts are not this server's to decide.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Paths of files served alike to anyone, with or without a key: they may be cached.
PUBLIC_FILES = ("/static/", "/docs-assets/")

#: Nothing but this server's stylesheet and images, and forms sent to this server; no frame.
POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

#: A year: what the browser remembers that this host is asked over https only.
STRICT_TRANSPORT = "max-age=31536000"

_ALWAYS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def security_headers(path: str, scheme: str) -> dict[str, str]:
    """The headers a response to ``path`` over ``scheme`` carries (its own Content-Security-Policy,
    when it has one, stays). One source for the middleware and for the 500 answer, which Starlette
    sends from outside every middleware (server.problems)."""
    headers = {**_ALWAYS, "Content-Security-Policy": POLICY}
    if not path.startswith(PUBLIC_FILES):
        headers["Cache-Control"] = "no-store"
    if scheme == "https":
        headers["Strict-Transport-Security"] = STRICT_TRANSPORT
    return headers


class SecurityHeaders:
    """Pure ASGI (no ``BaseHTTPMiddleware``): a streamed body (NEM12, CSV) passes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = security_headers(str(scope["path"]), str(scope.get("scheme", "http")))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in wanted.items():
                    if name == "Content-Security-Policy":
                        headers.setdefault(name, value)
                    else:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
