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

An IPv6 address is listed as itself (``::1``, ``[2001:db8::1]``) and kept bracketed, as a ``Host``
header carries it (``Host: [2001:db8::1]:8000``, RFC 3986 §3.2.2, RFC 9110 §7.2), which is the form
Starlette compares: before, every name with a colon was refused as one with a port, so a server
reached by its IPv6 address could not list it. The address is compared in its one canonical spelling
(RFC 5952: lowercase, zeros compressed), in the list and in the header alike, so ``[2001:DB8:0::1]``
is the same host as ``[2001:db8::1]``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.problems import RefusedBeforeRouting

__all__ = ["AllowedHosts", "allowed_host", "ipv6_host"]

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
        asked = _with_canonical_ipv6_host(scope)
        await self.check(asked, receive, _unsent)
        if asked.pop(_PASSED, False):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        detail = (
            f"this server does not answer for the host {host!r} (the request's Host header); {_WHERE_SET}"
            if host
            else f"the request names no host (no Host header); {_WHERE_SET}"
        )
        await RefusedBeforeRouting(400, detail, title="Host not served")(scope, receive, send)


def _with_canonical_ipv6_host(scope: Scope) -> Scope:
    """``scope`` for the check: its ``Host`` header's IPv6 address (``[2001:DB8:0::1]:8000``) spelled
    canonically (``[2001:db8::1]:8000``), as :func:`allowed_host` writes the listed ones; a copy, the
    request's own header left as sent. Any other ``Host`` (a name, IPv4, a malformed one) as it is:
    Starlette judges it."""
    headers = scope.get("headers", [])
    for index, (name, value) in enumerate(headers):
        if name == b"host":
            canonical = _canonical_ipv6_authority(value.decode("latin-1"))
            if canonical is None:
                return scope
            changed = list(headers)
            changed[index] = (name, canonical.encode("latin-1"))
            return {**scope, "headers": changed}
    return scope


#: A ``Host`` header naming an IPv6 address: the bracketed address, then perhaps a port.
_IPV6_AUTHORITY = re.compile(r"\[([0-9A-Fa-f:.]+)\](:[0-9]*)?")


def _canonical_ipv6_authority(host: str) -> str | None:
    """``host`` with its IPv6 address spelled canonically; None when it names no IPv6 address."""
    match = _IPV6_AUTHORITY.fullmatch(host)
    if match is None:
        return None
    try:
        address = ipaddress.IPv6Address(match[1])
    except ValueError:
        return None
    return f"[{address.compressed}]{match[2] or ''}"


def ipv6_host(text: str) -> str | None:
    """``text`` (``::1``, ``[::1]``) as the host of a ``Host`` header naming that IPv6 address
    (``[::1]``, canonically spelled); None when it is no IPv6 address; ValueError for one with a port
    or a zone (``%eth0``: a browser sends none in a ``Host`` header). server.origins compares an
    ``Origin`` with the request's own address in this spelling too."""
    bracketed = text.startswith("[")
    address = text[1:].partition("]")[0] if bracketed else text
    if bracketed and not text.endswith("]"):
        if _canonical_ipv6_authority(text) is not None:
            raise ValueError(f"{text!r} is no host name: the address alone, without a port (the port is not checked)")
        raise ValueError(f"{text!r} is no host name: an IPv6 address is written [2001:db8::1] or 2001:db8::1")
    try:
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        if bracketed:
            raise ValueError(f"{text!r} is no IPv6 address (between the brackets: 2001:db8::1)") from None
        return None
    if parsed.scope_id is not None:
        raise ValueError(f"{text!r}: a zone (%{parsed.scope_id}) is not part of a Host header; give the address alone")
    return f"[{parsed.compressed}]"


#: A DNS name's label: letters, digits and hyphens, not starting or ending with a hyphen.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def allowed_host(text: str) -> str:
    """``text`` as a name the server answers for: a host name (lowercased), ``*.`` and a domain for
    every name under it, an IPv4 address, or an IPv6 address (``::1``, ``[2001:db8::1]``), bracketed
    and canonically spelled as a ``Host`` header names it (``[2001:db8::1]``); ValueError saying why
    it is none (a port, a scheme, ``*`` alone)."""
    given = text.strip().lower().rstrip(".")
    if given == "*":
        raise ValueError("'*' is every host: leave --allowed-host out to answer any name")
    if "://" in given or "/" in given:
        raise ValueError(f"{text!r} is no host name: the name alone (water.example.org), without a scheme or path")
    if ":" in given:
        ipv6 = ipv6_host(given)
        if ipv6 is not None:
            return ipv6
        raise ValueError(
            f"{text!r} is no host name: the name alone, without a port (the port is not checked); "
            "an IPv6 address alone (2001:db8::1 or [2001:db8::1])"
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
