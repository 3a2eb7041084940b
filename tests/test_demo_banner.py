"""The demo's banner: each address it prints opens what its line says, for the key it prints."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from aquami.demo import Demo, DemoOptions
from server.app import create_app
from server.auth import create_api_key

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def banner(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """The banner a demo prints for an admin key (as the demo's), the app it names, and its lines by label."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "demo", ["admin"])
    out = io.StringIO()
    demo = Demo(DemoOptions(), out=out)
    demo.api_key, demo.web_url, demo.database_url = key, "http://testserver", migrated_database_url
    demo._banner(demo._sign_in_link())
    lines = dict(re.findall(r"^  (\w[\w ]*):\s+(\S+)", out.getvalue(), flags=re.MULTILINE))
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, lines, key


def test_the_care_line_opens_the_care_desk_in_the_browser(banner) -> None:
    """It printed /enquiries, the JSON API: care staff who opened it, signed in by the link above it,
    read raw JSON. It is the care desk's page now, which lists the enquiries detection raised."""
    client, lines, key = banner
    client.cookies.set("aquami_key", key)
    page = client.get(lines["care"], headers={"Accept": BROWSER})
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>Enquiries · aquami</title>" in page.text


def test_the_sign_in_link_carries_no_key_and_signs_in_once(banner) -> None:
    """It printed /login?key=<the admin key>, which a browser keeps in its history: on a shared PC
    the next person signed in as admin from there. It is a one-time link now (server.sign_in_links)."""
    client, lines, key = banner
    link = lines["or open"]
    assert link.startswith("http://testserver/login?token=") and key.split(".")[1] not in link
    opened = client.get(link, headers={"Sec-Fetch-Site": "none"}, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["set-cookie"].startswith("aquami_key=aqs_")
    assert client.get("/", headers={"Accept": BROWSER}).status_code == 200
    client.cookies.clear()
    assert client.get(link, headers={"Sec-Fetch-Site": "none"}, follow_redirects=False).status_code == 410
