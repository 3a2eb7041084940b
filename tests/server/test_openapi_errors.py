"""The OpenAPI document declares the errors the server sends, as the problem documents they are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from server.problems import PROBLEM_JSON


@pytest.fixture
def signed_in(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    """A client, and the headers of an admin's key, of a billing key, and of none."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        keys = {role: create_api_key(conn, f"test {role}", [role]) for role in ("admin", "billing")}
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, {"none": {}, **{role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}}


def _declared(spec: dict[str, Any], path: str, method: str, status: str, media_type: str) -> dict[str, Any]:
    """The schema ``spec`` declares for that answer, with the components its references point into."""
    responses = spec["paths"][path][method]["responses"]
    assert status in responses, f"{method.upper()} {path} answered {status}, declaring only {sorted(responses)}"
    assert responses[status]["description"].strip()
    content = responses[status]["content"]
    assert media_type in content, f"{method.upper()} {path} {status} is documented as {sorted(content)}"
    return {**content[media_type]["schema"], "components": spec["components"]}


@pytest.mark.parametrize(
    ("method", "path", "url", "body", "key", "status"),
    [
        ("get", "/meters", "/meters?limit=0", None, "admin", 422),
        ("post", "/alerts/{alert_id}/dismiss", "/alerts/A1/dismiss", {"reason": 5}, "admin", 422),
        ("get", "/meters", "/meters", None, "none", 401),
        ("get", "/meters", "/meters", None, "billing", 403),
        ("get", "/meters/{meter_id}", "/meters/NOPE", None, "admin", 404),
        ("post", "/alerts/{alert_id}/dismiss", "/alerts/NOPE/dismiss", {"reason": "no leak"}, "admin", 404),
        ("get", "/alerts", "/alerts?cursor=NOPE", None, "admin", 400),
        ("get", "/health", "/health?x=%00", None, "none", 400),
        ("get", "/enquiries/{enquiry_id}", "/enquiries/999", None, "admin", 404),
        ("get", "/open311/v2/requests.json", "/open311/v2/requests.json", None, "none", 401),
        ("post", "/open311/v2/requests.json", "/open311/v2/requests.json", b"leak", "admin", 415),
        ("post", "/meters/{meter_id}/readings", "/meters/M1/readings", {"reason": "x" * 70_000}, "none", 413),
        # the body cap is on every request: a GET declaring a body over it is a 413 as well
        ("get", "/meters", "/meters", b"x" * 70_000, "none", 413),
        ("get", "/health", "/health", b"x" * 70_000, "none", 413),
        ("get", "/open311/v2/services.json", "/open311/v2/services.json", b"x" * 70_000, "none", 413),
    ],
)
def test_an_error_is_the_problem_document_the_schema_declares(
    signed_in: tuple[TestClient, dict[str, dict[str, str]]],
    method: str,
    path: str,
    url: str,
    body: Any,
    key: str,
    status: int,
) -> None:
    """Every 422 was documented as FastAPI's ``application/json`` HTTPValidationError (``detail`` a
    list of errors), while the server answers ``application/problem+json`` with ``detail`` a
    sentence and the errors in ``errors``: a client generated from the schema misread every one.
    And no other error status was declared at all (401, 403, 404, 413, 415…): such a client had no
    type for them."""
    client, headers = signed_in
    spec = client.get("/openapi.json").json()
    raw = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = client.request(method.upper(), url, headers=headers[key], **raw)
    assert response.status_code == status, response.text
    media_type = response.headers["content-type"].partition(";")[0]
    jsonschema.validate(response.json(), _declared(spec, path, method, str(status), media_type))
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_every_error_the_schema_declares_is_a_problem_saying_when() -> None:
    """Each operation's 4xx and 5xx: a problem document, with a line saying when it is answered."""
    spec = create_app("postgresql://schema-only.invalid/aquami").openapi()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    where = f"{method.upper()} {path} {status}"
                    assert response["content"] == {
                        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }, where
                    assert response["description"].strip() and "\n" not in response["description"], where


def test_every_operation_declares_the_body_cap_s_413() -> None:
    """BodyLimit refuses a body over the cap on any request, before routing (a GET's too: see
    test_body_limit); before, only the operations taking a body declared it, so a GET's 413 broke
    the document's contract."""
    spec = create_app("postgresql://schema-only.invalid/aquami").openapi()
    operations = [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(operations) > 20
    for method, path, operation in operations:
        assert "413" in operation["responses"], f"{method.upper()} {path}"
