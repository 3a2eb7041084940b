"""/docs and /redoc load nothing from another host, run only this server's scripts, and cannot be framed."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from fastapi.testclient import TestClient

from server.app import create_app

DOCS_PAGES = ["/docs", "/redoc"]


@pytest.fixture(scope="module")
def client() -> TestClient:
    """The app without its start-up (no database): the documentation pages need none."""
    return TestClient(create_app("postgresql://127.0.0.1:1/unused"))


def _directive(policy: str, name: str) -> list[str]:
    for directive in policy.split(";"):
        words = directive.split()
        if words and words[0] == name:
            return words[1:]
    raise AssertionError(f"no {name} in {policy!r}")


@pytest.mark.parametrize("path", DOCS_PAGES)
def test_a_docs_page_loads_its_files_from_this_server(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    links = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert links, page.text
    for link in links:  # before: cdn.jsdelivr.net (swagger-ui-dist@5, redoc@2), fonts.googleapis.com
        assert link.startswith("/") and not link.startswith("//"), link
        assert client.get(link).status_code == 200, link
    assert "googleapis" not in page.text and "cdn." not in page.text


@pytest.mark.parametrize("path", DOCS_PAGES)
def test_a_docs_page_may_not_be_framed_nor_run_another_hosts_script(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.headers["x-frame-options"] == "DENY"
    policy = page.headers["content-security-policy"]
    assert _directive(policy, "frame-ancestors") == ["'none'"]
    assert _directive(policy, "default-src") == ["'none'"]
    scripts = _directive(policy, "script-src")
    assert scripts[0] == "'self'" and all(s.startswith("'sha256-") for s in scripts[1:])
    for inline in re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL):  # Swagger UI's start-up
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in scripts
    assert _directive(policy, "connect-src") == ["'self'"]


def test_the_openapi_document_stays(client: TestClient) -> None:
    assert client.get("/openapi.json").json()["info"]["title"] == "aquami"
