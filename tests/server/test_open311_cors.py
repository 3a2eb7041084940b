"""A customers' app written as a web page, on another origin than the server, calls Open311 from the
browser (server.cors). Before, no answer carried ``Access-Control-Allow-Origin`` and a preflight was a
405, so the browser sent nothing: the README told such an app to call from its own server. Now
``aquami server run --cors-origin`` names the origins allowed, on the Open311 paths only; none by
default, as before."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aquami.cli import app as cli
from server.app import create_app
from server.auth import create_api_key
from server.body_limit import MAX_BODY_BYTES
from server.cors import allowed_origin

V2 = "/open311/v2"
APP_ORIGIN = "https://app.example.org"
LEAK = {"service_code": "leak_street", "description": "Water coming up through the road", "lat": 51.5, "long": -0.1}


def _preflight(client: TestClient, path: str, origin: str = APP_ORIGIN) -> httpx.Response:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


@pytest.fixture
def keys(migrated_database_url: str) -> dict[str, str]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        return {
            "customer_app": create_api_key(conn, "fixit web app", ["customer_app"]),
            "reader": create_api_key(conn, "rita", ["reader"]),
        }


@pytest.fixture
def allowing(migrated_database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(migrated_database_url, cors_origins=[APP_ORIGIN, "http://LOCALHOST:5173/"])) as client:
        yield client


def test_without_origins_configured_no_answer_allows_another_site(migrated_database_url: str) -> None:
    with TestClient(create_app(migrated_database_url)) as client:
        preflight = _preflight(client, f"{V2}/requests.json")
        assert preflight.status_code == 405, preflight.text
        services = client.get(f"{V2}/services.json", headers={"Origin": APP_ORIGIN})
        assert services.status_code == 200
        assert not any(name.startswith("access-control-") for name in services.headers)


def test_an_allowed_origin_s_page_raises_and_reads_a_request(
    allowing: TestClient, keys: dict[str, str], migrated_database_url: str
) -> None:
    preflight = _preflight(allowing, f"{V2}/requests.json")
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
    assert set(preflight.headers["access-control-allow-methods"].split(", ")) == {"GET", "HEAD", "POST"}
    allowed_headers = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "x-api-key", "idempotency-key", "content-type"):
        assert header in allowed_headers
    assert "access-control-allow-credentials" not in preflight.headers  # the cookie is never Open311's key
    # the POST the browser then sends: answered with the origin allowed, so the page reads the id
    headers = {
        "Origin": APP_ORIGIN,
        "Authorization": f"Bearer {keys['customer_app']}",
        "Idempotency-Key": "6f1c2a8e-1b7d-4c55-9a57-3f0e8c1d2b44",
    }
    raised = allowing.post(f"{V2}/requests.json", json=LEAK, headers=headers)
    assert raised.status_code == 200, raised.text
    assert raised.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "origin" in raised.headers["vary"].lower()
    request_id = raised.json()[0]["service_request_id"]
    read = allowing.get(
        f"{V2}/requests/{request_id}.json", headers={"Origin": APP_ORIGIN, "Authorization": headers["Authorization"]}
    )
    assert read.status_code == 200 and read.headers["access-control-allow-origin"] == APP_ORIGIN
    # an error is readable too: the page can say what was wrong
    refused = allowing.post(f"{V2}/requests.json", json=LEAK, headers={"Origin": APP_ORIGIN})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP_ORIGIN
    too_large = {**LEAK, "description": "x" * (MAX_BODY_BYTES + 1)}
    refused = allowing.post(f"{V2}/requests.json", json=too_large, headers=headers)
    assert refused.status_code == 413 and refused.headers["access-control-allow-origin"] == APP_ORIGIN
    with psycopg.connect(migrated_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM enquiries").fetchone() == (1,)
    # the origin given with a default port, a trailing slash and capitals is the one browsers send
    local = _preflight(allowing, f"{V2}/requests.json", origin="http://localhost:5173")
    assert local.status_code == 200 and local.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_another_origin_and_the_rest_of_the_api_are_not_opened(allowing: TestClient, keys: dict[str, str]) -> None:
    other = _preflight(allowing, f"{V2}/requests.json", origin="https://evil.example")
    assert other.status_code == 400 and other.headers["content-type"] == "application/problem+json"
    assert "access-control-allow-origin" not in other.headers
    services = allowing.get(f"{V2}/services.json", headers={"Origin": "https://evil.example"})
    assert services.status_code == 200 and "access-control-allow-origin" not in services.headers
    # the API and the web page stay same-origin, for the allowed origin too
    for path in ("/meters", "/enquiries", "/"):
        preflight = _preflight(allowing, path)
        assert "access-control-allow-origin" not in preflight.headers, path
        assert preflight.status_code == 405, (path, preflight.text)
    meters = allowing.get("/meters", headers={"Origin": APP_ORIGIN, "Authorization": f"Bearer {keys['reader']}"})
    assert meters.status_code == 200 and "access-control-allow-origin" not in meters.headers
    # the preflight's answer carries the security headers every answer does
    assert _preflight(allowing, f"{V2}/requests.json").headers["x-content-type-options"] == "nosniff"


def test_a_refused_preflight_is_a_problem_document_saying_what_was_refused(allowing: TestClient) -> None:
    """Before, Starlette's plain text ``Disallowed CORS origin``, where every other error of the API is
    problem+json; now it names the origin (or method, or header) refused and where origins are set."""
    other = _preflight(allowing, f"{V2}/requests.json", origin="https://evil.example")
    assert other.status_code == 400 and other.headers["content-type"] == "application/problem+json"
    assert other.json() == {
        "type": "about:blank",
        "title": "Cross-origin request refused",
        "status": 400,
        "detail": "the origin 'https://evil.example' may not call Open311 from a browser: the origins allowed "
        "are set by aquami server run --cors-origin (AQUAMI_CORS_ORIGINS)",
        "instance": f"{V2}/requests.json",
    }
    assert other.headers["x-content-type-options"] == "nosniff" and "access-control-allow-origin" not in other.headers
    assert "POST" in other.headers["access-control-allow-methods"]  # Starlette's preflight headers kept
    both = allowing.options(
        f"{V2}/requests.json",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "x-secret",
        },
    )
    assert both.status_code == 400 and both.json()["detail"] == (
        "the method 'DELETE' is not one a page may send (GET, HEAD, POST); the headers 'x-secret' are not all ones "
        "a page may send (Authorization, X-API-Key, Idempotency-Key, Content-Type)"
    )


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://app.example.org", "https://app.example.org"),
        ("HTTPS://App.Example.org:443/", "https://app.example.org"),
        ("http://localhost:80", "http://localhost"),
        ("http://10.0.0.7:8080", "http://10.0.0.7:8080"),
        ("http://[::1]:5173", "http://[::1]:5173"),
    ],
)
def test_an_origin_is_written_as_browsers_send_it(given: str, origin: str) -> None:
    assert allowed_origin(given) == origin


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("*", "name each origin"),
        ("app.example.org", "is no origin"),
        ("ftp://app.example.org", "is no origin"),
        ("https://app.example.org/open311", "without a path"),
        ("https://user@app.example.org", "the scheme, host and port alone"),
        ("https://app.example.org:99999", "no valid port"),
        ("null", "is no origin"),
    ],
)
def test_what_is_no_origin_is_refused_by_the_command_before_it_starts(given: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        allowed_origin(given)
    result = CliRunner(env={"COLUMNS": "400"}).invoke(
        cli,
        ["server", "run", "--database-url", "postgresql://127.0.0.1:1/none", "--cors-origin", given],
        terminal_width=400,
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for --cors-origin" in result.output and says in result.output
