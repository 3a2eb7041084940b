"""A query parameter an operation does not take is refused (400 naming it), not ignored: a mistyped
filter answered everything (``GET /alerts?meter=M1``, the parameter being ``meter_id``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import create_api_key
from tests.server.test_alerts_api import alert  # an alert detected hours after T0, as the alerts API's tests make


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    """A client on a database with two meters' alerts, and the headers of an admin's and a billing key."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, f"test {role}", [role]) for role in ("admin", "billing")}
        with conn.transaction():
            save_changes(conn, AlertChanges(opened=[alert(AlertKind.LEAK, "M1", 0), alert(AlertKind.BURST, "M2", 1)]))
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}


def test_a_mistyped_filter_is_refused_naming_the_parameter_meant(
    api: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    """Before, ``meter=M1`` was ignored and both meters' alerts answered, 200."""
    client, headers = api
    meant = client.get("/alerts", params={"meter_id": "M1"}, headers=headers["billing"])
    assert [a["meter_id"] for a in meant.json()["items"]] == ["M1"]
    mistyped = client.get("/alerts", params={"meter": "M1"}, headers=headers["billing"])
    assert mistyped.status_code == 400, mistyped.text
    problem = mistyped.json()
    assert mistyped.headers["content-type"].startswith("application/problem+json")
    assert problem["title"] == "Unknown query parameter"
    assert problem["errors"] == [
        {"location": "query/meter", "message": "not a parameter of this operation; did you mean meter_id?"}
    ]
    assert problem["detail"].endswith("GET /alerts takes status, kind, meter_id, dma, limit, cursor")
    # a name near none is named without a guess; every unknown one is named
    far = client.get("/alerts", params={"zzz": "1", "meter": "M1"}, headers=headers["billing"]).json()
    assert far["errors"] == [
        {"location": "query/zzz", "message": "not a parameter of this operation"},
        {"location": "query/meter", "message": "not a parameter of this operation; did you mean meter_id?"},
    ]


def test_the_key_is_still_checked_before_the_query(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, _ = api
    assert client.get("/alerts", params={"meter": "M1"}).status_code == 401
    assert client.get("/open311/v2/requests.json", params={"start": "x"}).status_code == 401


def test_every_documented_operation_refuses_an_unknown_parameter(
    api: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    """Each operation of the OpenAPI document (with an admin's key, so the key passes), and each
    documents it among its 400s."""
    client, headers = api
    spec = client.get("/openapi.json").json()
    asked = 0
    for path, operations in spec["paths"].items():
        url = re.sub(r"\{[^}]+\}", "X1", path)
        for method, operation in operations.items():
            answer = client.request(method.upper(), url, params={"nonsense": "1"}, headers=headers["admin"])
            assert answer.status_code == 400, f"{method.upper()} {path}: {answer.status_code} {answer.text}"
            assert answer.json()["errors"][0]["location"] == "query/nonsense", f"{method.upper()} {path}"
            assert "query parameter the operation does not take" in operation["responses"]["400"]["description"]
            asked += 1
    assert asked == 21


def test_open311_takes_the_parameters_its_spec_defines(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    """GeoReport v2's ``jurisdiction_id`` on every method, and the ``api_key`` its clients send."""
    client, headers = api
    spec = {"jurisdiction_id": "utility.example", "api_key": "anything"}
    assert client.get("/open311/v2/services.json", params=spec).status_code == 200
    listed = client.get(
        "/open311/v2/requests.json",
        params={**spec, "status": "open", "service_code": "leak_street"},
        headers=headers["admin"],
    )
    assert listed.status_code == 200, listed.text
    mistyped = client.get("/open311/v2/services.json", params={"jurisdiction": "utility.example"})
    assert mistyped.status_code == 400
    assert mistyped.json()["errors"][0]["message"].endswith("did you mean jurisdiction_id?")


def test_open311_s_post_checks_its_key_before_the_query(api: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    """Its key may be in the body, so it was checked in the handler, after the query: without a key,
    an unknown parameter was a 400 where every role-protected route answers 401."""
    client, headers = api
    form = {"service_code": "leak_street", "address_string": "1 Main St"}
    assert client.post("/open311/v2/requests.json?nonsense=1", data=form).status_code == 401
    assert client.post("/open311/v2/requests.json?nonsense=1", data={**form, "api_key": "aqk_wrong"}).status_code == 401
    keyed = client.post("/open311/v2/requests.json?nonsense=1", data=form, headers=headers["admin"])
    assert keyed.status_code == 400 and keyed.json()["errors"][0]["location"] == "query/nonsense"
