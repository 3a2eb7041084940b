"""The host names the server answers for, when it is told them (``aquami server run --allowed-host``).

Every address the server writes into an answer (a list's ``next`` link, the documentation's server)
and its check that a form came from its own page (server.origins) are built from the request's
``Host``. A client that sends another ``Host`` (``Host: evil.example``) was answered with ``next``
links to that site. Behind the TLS proxy the README describes, the proxy passes the browser's
``Host`` on (the sign-in's origin check needs it), so the allow-list is checked here, on what
arrives, rather than the links being built from a configured address: one list protects every use
of ``Host``, and a request for another name is refused (400) before any route runs. Default: any
host, as before (a server on a LAN answers whatever name or address it is reached by).

Starlette's ``TrustedHostMiddleware`` does the work; :class:`AllowedHosts` answers its refusal in
problem+json, as every other error of the API (before, Starlette's plain text ``Invalid host header``,
which said neither the name refused nor where the names are set), and this module checks the names
given to it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.problems import RefusedBeforeRouting

__all__ = ["AllowedHosts", "allowed_host"]

#: Set in a request's scope when Starlette's check lets it through.
_PASSED = "aquami.host_allowed"
#: Where the names the server answers for are set, said to a client refused.
_WHERE_SET = "the names this server answers for are set by aquami server run --allowed-host (AQUAMI_ALLOWED_HOSTS)"


async def _passed(scope: Scope, receive: Receive, send: Send) -> None:
    scope[_PASSED] = True


async def _unsent(message: Message) -> None:
    """Where Starlette's plain-text refusal goes: nowhere (the problem document is sent instead)."""


class AllowedHosts:
    """Starlette's ``TrustedHostMiddleware`` deciding, its refusal answered as a problem document
    (400, ``Host not served``) saying the name refused and the option setting the names (not the
    names themselves: a client sending another ``Host`` is told no more of the server's names)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(_passed, allowed_hosts=list(allowed_hosts), www_redirect=False)
        #: for what is not HTTP (a websocket, should a route take one): Starlette's own refusal
        self.plain = TrustedHostMiddleware(app, allowed_hosts=list(allowed_hosts), www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.plain(scope, receive, send)
            return
        await self.check(scope, receive, _unsent)
        if scope.pop(_PASSED, False):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        detail = (
            f"this server does not answer for the host {host!r} (the request's Host header); {_WHERE_SET}"
            if host
            else f"the request names no host (no Host header); {_WHERE_SET}"
        )
        await RefusedBeforeRouting(400, detail, title="Host not served")(scope, receive, send)


#: A DNS name's label: letters, digits and hyphens, not starting or ending with a hyphen.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def allowed_host(text: str) -> str:
    """``text`` as a name the server answers for: a host name (lowercased), ``*.`` and a domain for
    every name under it, or an IPv4 address; ValueError saying why it is none (a port, a scheme,
    ``*`` alone, an IPv6 address)."""
    given = text.strip().lower().rstrip(".")
    if given == "*":
        raise ValueError("'*' is every host: leave --allowed-host out to answer any name")
    if "://" in given or "/" in given:
        raise ValueError(f"{text!r} is no host name: the name alone (water.example.org), without a scheme or path")
    if ":" in given:
        raise ValueError(
            f"{text!r} is no host name: the name alone, without a port (the port is not checked), "
            "and no IPv6 address (give the name it is reached by)"
        )
    try:
        ipaddress.IPv4Address(given)
    except ValueError:
        pass
    else:
        return given
    name = given.removeprefix("*.")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{text!r} is no host name: letters, digits, hyphens and dots (water.example.org)")
    return given
