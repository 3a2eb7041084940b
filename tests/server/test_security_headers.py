"""Every response carries the security headers, set once in server.security_headers: no frame, no
sniffing, no Referer to another site, and nothing answered under a key kept by the browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.auth import SESSION_COOKIE, create_api_key
from server.security_headers import PUBLIC_FILES

Desk = tuple[TestClient, str]


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """A client on a migrated database holding one meter and its reading, and an admin key."""
    from collector.migrate import migrate
    from tests.services import admin_url, create_database, drop_database

    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            key = create_api_key(conn, "care desk", ["admin"])
            conn.execute("INSERT INTO meters (meter_id) VALUES ('WM-1')")
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('WM-1', %s, 12.5)",
                (datetime(2026, 3, 1, tzinfo=UTC),),
            )
        with TestClient(create_app(url)) as client:
            yield client, key
    finally:
        drop_database(server, url)


def _assert_guarded(response, where: str) -> None:
    assert response.headers.get("x-frame-options") == "DENY", where
    policy = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy, where
    assert response.headers.get("x-content-type-options") == "nosniff", where
    # same-origin, not no-referrer: with no-referrer a browser posts the sign-in form with Origin: null
    assert response.headers.get("referrer-policy") == "same-origin", where


def test_what_the_signed_in_pages_links_open_is_not_kept_after_sign_out(desk: Desk) -> None:
    """The proof's case: the page was no-store, the customers' JSON its links open was not."""
    client, key = desk
    client.cookies.set(SESSION_COOKIE, key)
    try:
        page = client.get("/")
        links = {link for link in re.findall(r'href="(/[^"]*)"', page.text) if not link.startswith(PUBLIC_FILES)}
        links |= {"/meters/WM-1/readings", "/alerts?status=open", "/alerts?status=ongoing"}
        for link in sorted(links):
            response = client.get(link.replace("&amp;", "&"))
            assert response.status_code == 200, link
            assert response.headers.get("cache-control") == "no-store", link
            _assert_guarded(response, link)
    finally:
        client.cookies.clear()


def test_every_api_get_answered_under_a_key_is_no_store(desk: Desk) -> None:
    client, key = desk
    app = client.app
    assert isinstance(app, FastAPI)
    paths = {path for path, operations in app.openapi()["paths"].items() if "get" in operations}
    assert "/meters/{meter_id}/readings" in paths and "/enquiries" in paths
    for path in sorted(paths):
        concrete = re.sub(r"\{[^}]+\}", "WM-1", path)
        for headers in ({"Authorization": f"Bearer {key}"}, {"Cookie": f"{SESSION_COOKIE}={key}"}):
            response = client.get(concrete, headers=headers)
            assert response.headers.get("cache-control") == "no-store", (concrete, response.status_code)
            _assert_guarded(response, concrete)


_SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=12)


@settings(max_examples=60)
@given(
    segments=st.lists(st.one_of(st.sampled_from(["meters", "alerts", "static", "docs-assets", "WM-1"]), _SEGMENT)),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    keyed=st.booleans(),
)
def test_any_answer_carries_the_headers_and_only_public_files_may_be_cached(
    desk: Desk, segments: list[str], method: str, keyed: bool
) -> None:
    client, key = desk
    path = "/" + "/".join(segments)
    headers = {"Authorization": f"Bearer {key}"} if keyed else {}
    response = client.request(method, path, headers=headers, follow_redirects=False)
    _assert_guarded(response, f"{method} {path} -> {response.status_code}")
    # the path as sent: the client resolves dot segments ("/./static/x" asks for "/static/x")
    if not response.request.url.path.startswith(PUBLIC_FILES):
        assert response.headers.get("cache-control") == "no-store", f"{method} {path} -> {response.status_code}"


def test_a_refused_body_carries_them_too(desk: Desk) -> None:
    client, key = desk
    response = client.post("/alerts/a/dismiss", content=b"x" * 70_000, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 413
    _assert_guarded(response, "413")
    assert response.headers["cache-control"] == "no-store"


def test_the_stylesheet_may_be_cached_and_the_pages_need_nothing_the_policy_refuses(desk: Desk) -> None:
    """The page's policy allows this server's stylesheet and forms only: no script, no inline style."""
    client, key = desk
    style = client.get("/static/style.css")
    assert style.status_code == 200 and "no-store" not in style.headers.get("cache-control", "")
    assert re.search(r"url\(\s*['\"]?(https?:|//)", style.text) is None
    pages = [
        client.get("/", headers={"Authorization": f"Bearer {key}"}),
        client.get("/"),
        client.get(f"/login?key={key}"),
    ]
    for page in pages:
        policy = page.headers["content-security-policy"]
        assert "script-src" not in policy and "default-src 'none'" in policy
        assert "<script" not in page.text and " style=" not in page.text and "<style" not in page.text
        for link in re.findall(r'(?:src|href|action)="([^"]*)"', page.text):
            assert link.startswith("/") and not link.startswith("//"), link


def _app_with_a_route_that_fails() -> FastAPI:
    """The middleware and the problem handlers as server.app installs them, and a route that raises
    after answering nothing: Starlette's ServerErrorMiddleware answers it, outside every middleware."""
    from server.problems import install_problem_handlers
    from server.security_headers import SecurityHeaders

    app = FastAPI()
    app.add_middleware(SecurityHeaders)
    install_problem_handlers(app)

    @app.get("/{rest:path}")
    def answer(rest: str, fail: bool = False) -> dict[str, str]:
        if fail:
            raise RuntimeError("a bug")
        return {"rest": rest}

    return app


@settings(max_examples=40)
@given(segments=st.lists(st.one_of(st.sampled_from(["static", "docs-assets", "open311"]), _SEGMENT), max_size=4))
def test_a_500_carries_the_same_headers_as_any_answer_at_its_path(segments: list[str]) -> None:
    """end_date=0001-01-01 on Open311's requests.json was a 500 without X-Frame-Options, the policy,
    nosniff or no-store: the 500 is sent from outside the middleware that sets them."""
    path = "/" + "/".join(segments)
    with TestClient(_app_with_a_route_that_fails(), raise_server_exceptions=False) as client:
        ok, failed = client.get(path), client.get(path, params={"fail": "true"})
    assert (ok.status_code, failed.status_code) == (200, 500)
    assert failed.headers["content-type"].startswith("application/problem+json")
    _assert_guarded(failed, path)
    names = ("x-frame-options", "content-security-policy", "x-content-type-options", "referrer-policy", "cache-control")
    assert {n: failed.headers.get(n) for n in names} == {n: ok.headers.get(n) for n in names}
