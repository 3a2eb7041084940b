"""The sign-in form (and the old ``/login?key=`` link) sign a browser in with a session, never the
key: the cookie held the API key itself, which lives for months and went wherever the cookie went (a
browser profile copied, a cookie store read, a shared PC not signed out). And a session is for the
browser only: given as ``Authorization: Bearer`` or ``X-API-Key`` it is refused, saying an API
client needs a key. On the real database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import KEY_PREFIX, SESSION_COOKIE, SESSION_PREFIX, create_api_key, key_id_of, revoke_api_key

OWN = {"Origin": "http://testserver"}  # the server's own form
PASTED = {"Sec-Fetch-Site": "none"}  # the old key link pasted in the address bar


@dataclass
class Desk:
    client: TestClient
    key: str
    conn: psycopg.Connection

    def sessions(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM sign_in_sessions").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[Desk]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "care desk", ["customer_care"])
        with TestClient(create_app(migrated_database_url)) as client:
            yield Desk(client, key, conn)


def _cookie(response: httpx.Response) -> str:
    match = re.match(rf"{SESSION_COOKIE}=([^;]*);", response.headers.get("set-cookie", ""))
    assert match is not None, response.headers
    return match[1]


def _signed_in_by_form(desk: Desk) -> tuple[httpx.Response, str]:
    posted = desk.client.post("/login", data={"key": desk.key}, headers=OWN, follow_redirects=False)
    assert posted.status_code == 303 and posted.headers["location"] == "/", posted.text
    return posted, _cookie(posted)


def _as_cookie(desk: Desk, cookie: str, path: str) -> httpx.Response:
    desk.client.cookies.clear()
    return desk.client.get(path, headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}, follow_redirects=False)


def test_the_form_s_cookie_holds_a_session_not_the_key(desk: Desk) -> None:
    posted, cookie = _signed_in_by_form(desk)
    secret = desk.key.split(".", 1)[1]
    assert cookie.startswith(SESSION_PREFIX) and not cookie.startswith(KEY_PREFIX)
    assert secret not in cookie and key_id_of(desk.key) not in cookie
    # the attributes as before: a shift long, out of scripts' reach, not sent by another site
    set_cookie = posted.headers["set-cookie"]
    assert "Max-Age=43200" in set_cookie and "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    assert desk.sessions() == 1
    stored = desk.conn.execute("SELECT secret_hash, key_id FROM sign_in_sessions").fetchone()
    assert stored is not None and stored[1] == key_id_of(desk.key)
    assert cookie[len(SESSION_PREFIX) :] not in stored[0] and secret not in stored[0]  # its hash only


def test_the_form_s_session_signs_in_the_pages_and_the_api_the_page_calls(desk: Desk) -> None:
    _, cookie = _signed_in_by_form(desk)
    page = _as_cookie(desk, cookie, "/")
    assert page.status_code == 200 and "care desk" in page.text
    assert _as_cookie(desk, cookie, "/care/enquiries").status_code == 200  # the care desk's page
    meters = _as_cookie(desk, cookie, "/meters")  # the API, signed in by the cookie
    assert meters.status_code == 200 and meters.headers["content-type"].startswith("application/json")


def test_the_old_key_link_signs_in_with_a_session_too(desk: Desk) -> None:
    """``/login?key=`` opened directly, and its "Sign in as …?" answered with the server's own form."""
    opened = desk.client.get("/login", params={"key": desk.key}, headers=PASTED, follow_redirects=False)
    asked = desk.client.get("/login", params={"key": desk.key}, follow_redirects=False)
    assert asked.status_code == 200 and "Sign in as care desk?" in asked.text
    answered = desk.client.post("/login", data={"key": desk.key}, headers=OWN, follow_redirects=False)
    for signed_in in (opened, answered):
        cookie = _cookie(signed_in)
        assert signed_in.status_code == 303 and cookie.startswith(SESSION_PREFIX)
        assert desk.key.split(".", 1)[1] not in cookie
        assert _as_cookie(desk, cookie, "/").status_code == 200


def test_signing_out_ends_the_form_s_session_server_side(desk: Desk) -> None:
    """The cookie copied before signing out (a profile backup, another browser) is then refused."""
    _, cookie = _signed_in_by_form(desk)
    signed_out = desk.client.post("/logout", headers=OWN, follow_redirects=False)
    assert signed_out.status_code == 303 and signed_out.headers["set-cookie"].startswith(f'{SESSION_COOKIE}=""')
    assert desk.sessions() == 0
    assert _as_cookie(desk, cookie, "/").status_code == 401
    assert _as_cookie(desk, cookie, "/meters").status_code == 401


def test_revoking_the_key_ends_the_form_s_session(desk: Desk) -> None:
    _, cookie = _signed_in_by_form(desk)
    assert _as_cookie(desk, cookie, "/meters").status_code == 200
    revoke_api_key(desk.conn, key_id_of(desk.key))
    assert _as_cookie(desk, cookie, "/").status_code == 401
    assert _as_cookie(desk, cookie, "/meters").status_code == 401


def test_a_cookie_holding_a_key_from_before_sessions_keeps_signing_in_until_signed_out(desk: Desk) -> None:
    """A browser signed in before the upgrade holds the key in its cookie: it is not signed out
    mid-shift (the cookie expires within its 12 hours), and signing out deletes it."""
    desk.client.cookies.set(SESSION_COOKIE, desk.key)
    assert desk.client.get("/").status_code == 200 and desk.client.get("/meters").status_code == 200
    signed_out = desk.client.post("/logout", headers=OWN, follow_redirects=False)
    assert signed_out.headers["set-cookie"].startswith(f'{SESSION_COOKIE}=""')


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_a_session_given_as_an_api_key_is_refused_saying_a_client_needs_a_key(desk: Desk, header: str) -> None:
    _, cookie = _signed_in_by_form(desk)
    desk.client.cookies.clear()
    value = f"Bearer {cookie}" if header == "Authorization" else cookie
    api = desk.client.get("/meters", headers={header: value})
    assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"
    detail = api.json()["detail"]
    assert "sign-in session is for the web page" in detail and "API client needs an API key" in detail, detail
    page = desk.client.get("/", headers={header: value}, follow_redirects=False)
    assert page.status_code == 401 and "sign-in session is for the web page" in page.text
    # the same session from the cookie signs in: it is the place it was given for
    assert _as_cookie(desk, cookie, "/meters").status_code == 200


def test_a_session_given_as_open311_s_api_key_is_refused_saying_a_client_needs_a_key(desk: Desk) -> None:
    """Open311 reads a key from the body (GeoReport v2's api_key) as well as the headers."""
    _, cookie = _signed_in_by_form(desk)
    desk.client.cookies.clear()
    posted = desk.client.post(
        "/open311/v2/requests.json",
        data={"api_key": cookie, "service_code": "complaint", "description": "Rude", "address_string": "1 Low Rd"},
    )
    assert posted.status_code == 401, posted.text
    assert "sign-in session is for the web page" in posted.text
