"""The host names the server answers for, when it is told them (``aquami server run --allowed-host``).

Every address the server writes into an answer (a list's ``next`` link, the documentation's server)
and its check that a form came from its own page (server.origins) are built from the request's
``Host``. A client that sends another ``Host`` (``Host: evil.example``) was answered with ``next``
links to that site. Behind the TLS proxy the README describes, the proxy passes the browser's
``Host`` on (the sign-in's origin check needs it), so the allow-list is checked here, on what
arrives, rather than the links being built from a configured address: one list protects every use
of ``Host``, and a request for another name is refused (400) before any route runs. Default: any
host, as before (a server on a LAN answers whatever name or address it is reached by).

Starlette's ``TrustedHostMiddleware`` does the work (its answer: 400 ``Invalid host header``); this
module checks the names given to it.
"""

from __future__ import annotations

import ipaddress
import re

from starlette.middleware.trustedhost import TrustedHostMiddleware

__all__ = ["TrustedHostMiddleware", "allowed_host"]

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
