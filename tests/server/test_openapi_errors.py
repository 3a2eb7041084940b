"""The OpenAPI document describes the 422 the server sends: a problem document, not FastAPI's default."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key


@pytest.fixture
def signed_in(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "test admin", ["admin"])
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, {"Authorization": f"Bearer {key}"}


def _declared(spec: dict[str, Any], path: str, method: str, status: str, media_type: str) -> dict[str, Any]:
    """The schema ``spec`` declares for that answer, with the components its references point into."""
    content = spec["paths"][path][method]["responses"][status]["content"]
    assert media_type in content, f"{method.upper()} {path} {status} is documented as {sorted(content)}"
    return {**content[media_type]["schema"], "components": spec["components"]}


@pytest.mark.parametrize(
    ("method", "path", "url", "body"),
    [
        ("get", "/meters", "/meters?limit=0", None),
        ("post", "/alerts/{alert_id}/dismiss", "/alerts/A1/dismiss", {"reason": 5}),
    ],
)
def test_a_422_is_the_problem_document_the_schema_declares(
    signed_in: tuple[TestClient, dict[str, str]], method: str, path: str, url: str, body: Any
) -> None:
    """Every 422 was documented as FastAPI's ``application/json`` HTTPValidationError (``detail`` a
    list of errors), while the server answers ``application/problem+json`` with ``detail`` a
    sentence and the errors in ``errors``: a client generated from the schema misread every one."""
    client, auth = signed_in
    spec = client.get("/openapi.json").json()
    response = client.request(method.upper(), url, json=body, headers=auth)
    assert response.status_code == 422, response.text
    media_type = response.headers["content-type"].partition(";")[0]
    jsonschema.validate(response.json(), _declared(spec, path, method, "422", media_type))
    assert "HTTPValidationError" not in spec["components"]["schemas"]
