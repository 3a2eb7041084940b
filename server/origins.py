"""Whether a browser's request was started by another site: what the web page's sign-in and the
API's cookie-signed writes are refused for (cross-site request forgery).

Browsers send ``Sec-Fetch-Site`` only to https and localhost origins, so for a server on a LAN host
over plain HTTP the request's ``Origin`` (or, with neither, its ``Referer``) is looked at too.
"""

from __future__ import annotations

from contextlib import suppress
from urllib.parse import urlsplit

from starlette.requests import Request

from server.hosts import ipv6_host

#: The port an origin without one has, by scheme (RFC 6454: an origin is scheme, host and port).
DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """Scheme, host and port of a URL, the default port filled in and an IPv6 address in its one
    canonical spelling (RFC 5952, as ``--allowed-host`` compares it: server.hosts.ipv6_host); None for
    no URL or "null"."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port out of range or not a number
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        return None
    host = parts.hostname.lower()
    # [0:0:0:0:0:0:0:1] and [::1] are one host: the Host a client or proxy passes and the Origin a
    # browser writes may spell it differently (before, a post from the same IPv6 host was refused).
    # An address with a zone (%eth0), which no browser sends, is compared as written.
    with suppress(ValueError):
        host = ipv6_host(host) or host
    return scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme)


def from_another_site(request: Request) -> bool:
    """Whether the browser says the request was started by another site, or names an origin, or a
    page (``Referer``), that is not this server's: a cross-site form to http://<LAN host>:8000 has
    no ``Sec-Fetch-Site``, only its ``Origin`` and ``Referer``."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() == "cross-site":
        return True
    own = _origin(str(request.base_url))
    origin = request.headers.get("origin")
    if origin is not None and _origin(origin) != own:  # "null" (a sandboxed frame, a redirect) too
        return True
    referer = request.headers.get("referer")
    return fetch_site is None and origin is None and referer is not None and _origin(referer) != own
