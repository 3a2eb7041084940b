"""Behind a TLS proxy the server believes, every answer tells the browser to ask this host over https
only (``Strict-Transport-Security``); over plain HTTP none does (RFC 6797 section 7.2). Run against
``aquami server run`` itself: uvicorn's proxy headers decide the scheme, as in production."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.server.live_server import running_server

#: A page, the API refusing a request without a key, a public file, and an address no route has.
PATHS = ("/", "/login", "/meters", "/health", "/static/style.css", "/no-such-page")


def _headers(port: int, path: str, **sent: str) -> dict[str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as refused:
        return {k.lower(): v for k, v in refused.headers.items()}


def test_over_https_every_answer_keeps_the_browser_on_https_and_over_http_none_does(
    migrated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a server behind TLS sent no such header: a typed ``http://`` address went out in the
    clear, and a network in the way could answer it with a sign-in form of its own."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")  # the proxy, on this host
    with running_server(migrated_database_url) as port:
        for path in PATHS:
            over_tls = _headers(port, path, **{"X-Forwarded-Proto": "https"})
            assert over_tls.get("strict-transport-security") == "max-age=31536000", path
            assert "strict-transport-security" not in _headers(port, path), path


def test_a_proxy_the_server_does_not_believe_cannot_ask_for_it(
    migrated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``X-Forwarded-Proto`` from an address not in FORWARDED_ALLOW_IPS is not believed: the answer
    went over plain HTTP, and says nothing of https."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.1")
    with running_server(migrated_database_url) as port:
        assert "strict-transport-security" not in _headers(port, "/", **{"X-Forwarded-Proto": "https"})
