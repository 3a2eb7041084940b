"""One-time sign-in links (server.sign_in_links): the link the demo printed, ``/login?key=<API key>``,
left the key itself in the browser's history on a shared PC. A link now carries a token that signs
in once, within 10 minutes, and never the key; on the real database: once, twice, expired, its key
revoked, opened by two browsers at once."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aquami.cli import app
from server.access_log import _hide_keys
from server.app import create_app
from server.auth import SESSION_COOKIE, SESSION_PREFIX, create_api_key, key_id_of, revoke_api_key
from server.sign_in_links import Refusal, SignedIn, make_link, redeem

PASTED = {"Sec-Fetch-Site": "none"}  # a link pasted in the address bar
OWN = {"Origin": "http://testserver"}


@dataclass
class Desk:
    client: TestClient
    key: str
    conn: psycopg.Connection
    url: str

    def link(self) -> str:
        return make_link(self.conn, key_id_of(self.key)).token

    def count(self, sql: str) -> int:
        row = self.conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[Desk]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "care desk", ["customer_care"])
        with TestClient(create_app(migrated_database_url)) as client:
            yield Desk(client, key, conn, migrated_database_url)


def _cookie(response: httpx.Response) -> str:
    match = re.match(rf"{SESSION_COOKIE}=([^;]*);", response.headers.get("set-cookie", ""))
    assert match is not None, response.headers
    return match[1]


def test_a_link_signs_in_once_without_the_key_in_the_address_or_the_cookie(desk: Desk) -> None:
    token = desk.link()
    opened = desk.client.get("/login", params={"token": token}, headers=PASTED, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    session = _cookie(opened)
    assert session.startswith(SESSION_PREFIX) and token not in session and desk.key.split(".")[1] not in session
    assert "HttpOnly" in opened.headers["set-cookie"] and "Max-Age=43200" in opened.headers["set-cookie"]
    page = desk.client.get("/", follow_redirects=False)  # the client keeps the cookie
    assert page.status_code == 200 and "care desk" in page.text
    # only hashes are stored: neither the token nor the session's secret
    stored = desk.conn.execute(
        "SELECT token_hash FROM sign_in_links UNION ALL SELECT secret_hash FROM sign_in_sessions"
    )
    assert all(token not in h and session[len(SESSION_PREFIX) :] not in h for (h,) in stored.fetchall())

    desk.client.cookies.clear()
    again = desk.client.get("/login", params={"token": token}, headers=PASTED, follow_redirects=False)
    assert again.status_code == 410 and SESSION_COOKIE not in again.headers.get("set-cookie", "")
    assert "This sign-in link has already been used" in again.text and "aquami server sign-in-link" in again.text
    assert desk.client.get("/", follow_redirects=False).status_code == 401  # signed in by nothing else


def test_an_expired_link_signs_no_one_in_and_says_so(desk: Desk) -> None:
    token = desk.link()
    desk.conn.execute(
        "UPDATE sign_in_links SET created_at = created_at - interval '11 minutes', "
        "expires_at = expires_at - interval '11 minutes'"
    )
    opened = desk.client.get("/login", params={"token": token}, headers=PASTED, follow_redirects=False)
    assert opened.status_code == 410 and SESSION_COOKIE not in opened.headers.get("set-cookie", "")
    assert "This sign-in link has expired" in opened.text and "ask an administrator for a new link" in opened.text
    assert desk.count("SELECT count(*) FROM sign_in_sessions") == 0


def test_a_link_of_a_revoked_key_signs_no_one_in_and_its_session_ends_with_the_key(desk: Desk) -> None:
    used, unused = desk.link(), desk.link()
    opened = desk.client.get("/login", params={"token": used}, headers=PASTED, follow_redirects=False)
    assert opened.status_code == 303
    revoke_api_key(desk.conn, key_id_of(desk.key))
    assert desk.client.get("/", follow_redirects=False).status_code == 401  # the session stood for the key
    assert desk.client.get("/meters", headers={"Cookie": f"{SESSION_COOKIE}={_cookie(opened)}"}).status_code == 401
    desk.client.cookies.clear()
    refused = desk.client.get("/login", params={"token": unused}, headers=PASTED, follow_redirects=False)
    assert refused.status_code == 410 and "This sign-in link's key has been revoked" in html.unescape(refused.text)
    assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")
    with pytest.raises(LookupError, match="was revoked at"):
        desk.link()  # no new link for it


def test_a_token_never_made_is_not_valid(desk: Desk) -> None:
    assert redeem(desk.conn, "a\x00b") is Refusal.UNKNOWN  # (the app refuses a NUL in an address before: 400)
    for token in ("nosuchtoken", ""):
        opened = desk.client.get("/login", params={"token": token}, headers=PASTED, follow_redirects=False)
        assert opened.status_code == 401 and "This sign-in link is not valid" in opened.text, token
        assert SESSION_COOKIE not in opened.headers.get("set-cookie", "")


def test_a_link_opened_twice_at_once_signs_in_one_browser(desk: Desk) -> None:
    """The first opening holds the link's row until its transaction ends; the second waits on it, then
    finds the link used: it signs no one in (without the check in the UPDATE both would have)."""
    token = desk.link()
    second: list[SignedIn | Refusal] = []
    with psycopg.connect(desk.url, autocommit=True) as first_conn, psycopg.connect(desk.url, autocommit=True) as other:
        with first_conn.transaction():
            first = redeem(first_conn, token)  # its savepoint released, its transaction still open
            pid = other.info.backend_pid
            opener = threading.Thread(target=lambda: second.append(redeem(other, token)))
            opener.start()
            for _ in range(200):  # until the second opening waits on the first's row lock
                waiting = desk.conn.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
                if waiting == ("Lock",):
                    break
                opener.join(0.05)
            assert waiting == ("Lock",) and not second, (waiting, second)
        opener.join(10)
    assert isinstance(first, SignedIn) and second == [Refusal.USED]
    assert desk.count("SELECT count(*) FROM sign_in_sessions") == 1


def test_of_many_browsers_opening_a_link_together_one_signs_in(desk: Desk) -> None:
    token = desk.link()
    start = threading.Barrier(6)
    results: list[SignedIn | Refusal] = []

    def open_link() -> None:
        with psycopg.connect(desk.url, autocommit=True) as conn:
            start.wait()
            results.append(redeem(conn, token))

    openers = [threading.Thread(target=open_link) for _ in range(6)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(30)
    assert sum(isinstance(r, SignedIn) for r in results) == 1 and results.count(Refusal.USED) == 5, results


@pytest.mark.parametrize(
    "headers",
    [
        {},  # plain HTTP to a LAN host: no Sec-Fetch-Site, and no Referer
        {"Referer": "http://evil.example/"},
        {"Sec-Fetch-Site": "same-site", "Referer": "http://wiki.testserver/"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_a_link_not_opened_directly_asks_first_and_stays_unused(desk: Desk, headers: dict[str, str]) -> None:
    """Login CSRF: another page sending the link signs no one in; it asks "Sign in as <name>?", and the
    answer, the server's own form, must come from the server's page."""
    token = desk.link()
    linked = desk.client.get("/login", params={"token": token}, headers=headers, follow_redirects=False)
    assert linked.status_code == 200 and SESSION_COOKIE not in linked.headers.get("set-cookie", "")
    assert "Sign in as care desk?" in linked.text
    assert desk.count("SELECT count(*) FROM sign_in_links WHERE used_at IS NULL") == 1
    form = re.search(
        r'<form method="post" action="/login/link">\s*<input name="token" type="hidden" value="([^"]+)"', linked.text
    )
    assert form is not None and form[1] == token, linked.text
    forged = desk.client.post("/login/link", data={"token": token}, headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403 and SESSION_COOKIE not in forged.headers.get("set-cookie", "")
    assert desk.count("SELECT count(*) FROM sign_in_links WHERE used_at IS NULL") == 1
    answered = desk.client.post("/login/link", data={"token": token}, headers=OWN, follow_redirects=False)
    assert answered.status_code == 303 and _cookie(answered).startswith(SESSION_PREFIX)


def test_signing_out_ends_the_session(desk: Desk) -> None:
    """A cookie copied before signing out (another browser profile, a backup) signs in no more."""
    opened = desk.client.get("/login", params={"token": desk.link()}, headers=PASTED, follow_redirects=False)
    session = _cookie(opened)
    signed_out = desk.client.post("/logout", headers=OWN, follow_redirects=False)
    assert signed_out.status_code == 303 and signed_out.headers["set-cookie"].startswith(f'{SESSION_COOKIE}=""')
    assert desk.client.get("/meters", headers={"Cookie": f"{SESSION_COOKIE}={session}"}).status_code == 401
    assert desk.count("SELECT count(*) FROM sign_in_sessions") == 0


def test_links_and_sessions_past_their_time_are_deleted(desk: Desk) -> None:
    """As Open311's claims: a link is kept 24 hours after it expired (to be told apart as used or
    expired), then the next link made or opened deletes it; a session past its end is deleted too."""
    desk.client.get("/login", params={"token": desk.link()}, headers=PASTED)
    desk.link()
    desk.conn.execute(
        "UPDATE sign_in_links SET created_at = created_at - interval '25 hours', "
        "expires_at = expires_at - interval '25 hours'"
    )
    desk.conn.execute(
        "UPDATE sign_in_sessions SET created_at = created_at - interval '13 hours', "
        "expires_at = expires_at - interval '13 hours'"
    )
    kept = desk.link()
    assert desk.count("SELECT count(*) FROM sign_in_links") == 1  # the two old ones gone, the new one kept
    assert desk.count("SELECT count(*) FROM sign_in_sessions") == 0
    desk.conn.execute(
        "UPDATE sign_in_links SET created_at = now() - interval '24 hours', expires_at = now() - interval '23 hours'"
    )
    desk.link()  # deletes none expired less than 24 hours ago
    assert desk.count("SELECT count(*) FROM sign_in_links") == 2
    told = desk.client.get("/login", params={"token": kept}, headers=PASTED, follow_redirects=False)
    assert told.status_code == 410 and "expired" in told.text  # kept, so said as expired, not unknown


def test_the_command_prints_a_one_time_link(desk: Desk) -> None:
    result = CliRunner().invoke(
        app,
        [
            "server",
            "sign-in-link",
            "--key-id",
            key_id_of(desk.key),
            "--url",
            "http://care.example:8000/",
            "--database-url",
            desk.url,
        ],
    )
    assert result.exit_code == 0, result.output
    match = re.search(r"^http://care\.example:8000/login\?token=(\S+)$", result.stdout, re.MULTILINE)
    assert match is not None and desk.key.split(".")[1] not in result.stdout, result.stdout
    opened = desk.client.get("/login", params={"token": match[1]}, headers=PASTED, follow_redirects=False)
    assert opened.status_code == 303
    unknown = CliRunner().invoke(app, ["server", "sign-in-link", "--key-id", "nosuchkey", "--database-url", desk.url])
    assert unknown.exit_code == 2 and "no API key 'nosuchkey'" in unknown.output


def test_a_link_s_token_is_kept_out_of_the_access_log() -> None:
    assert _hide_keys('"GET /login?token=abc-DEF_123 HTTP/1.1"') == '"GET /login?token=*** HTTP/1.1"'
