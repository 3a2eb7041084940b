"""A value too long for one of PostgreSQL's indexes is a 422 naming it, and nothing is stored.

PostgreSQL refuses a btree index entry over 2,704 bytes (``ProgramLimitExceeded``), which psycopg
counts an ``OperationalError``: the API answered it as a lost connection, a 503 "the database
connection was lost; try again shortly" with Retry-After, which a client retries for ever. No HTTP
client can store such a value any more (register-meters takes ids of at most 64 characters), but a
database from before may hold one: a meter id of 2,680 bytes that do not compress is in ``meters``
and ``readings`` (their indexes take it), and correcting one of its readings writes the version it
replaces to ``reading_history``, whose index (meter_id, ts, id) does not take it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import jsonschema
import psycopg
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from tests.server.test_open311_references import UNINDEXABLE_ID
from tests.server.test_openapi_errors import _declared

T0 = datetime(2026, 11, 1, 6, tzinfo=UTC)


@pytest.fixture
def api(migrated_database_url: str) -> Iterator[tuple[TestClient, str, str]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:  # as stored before ids were checked
        key = create_api_key(conn, "Ann", ["meterization"])
        for meter_id in (UNINDEXABLE_ID, "M1"):
            conn.execute("INSERT INTO meters (meter_id, registered, has_readings) VALUES (%s, true, true)", (meter_id,))
            conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, 100.000)", (meter_id, T0))
    with TestClient(create_app(migrated_database_url), headers={"Authorization": f"Bearer {key}"}) as client:
        yield client, migrated_database_url, key


def test_a_correction_an_index_cannot_hold_is_a_422_naming_it_and_stores_nothing(
    api: tuple[TestClient, str, str],
) -> None:
    """Before: 503, "the database connection was lost; try again shortly", Retry-After: 5."""
    client, url, _ = api
    body = {"volume_m3": "100.125", "reason": "misread digit"}
    refused = client.put(f"/meters/{UNINDEXABLE_ID}/readings/{T0.isoformat()}", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "retry-after" not in refused.headers
    problem = refused.json()
    assert (problem["title"], problem["table"], problem["index"], problem["columns"]) == (
        "Value too long", "reading_history", "reading_history_key_idx", ["meter_id"],
    )  # fmt: skip
    assert problem["detail"].startswith("reading_history.meter_id is too long for the database's index "), problem
    assert "exceeds btree version 4 maximum 2704" in problem["detail"] and "nothing was stored" in problem["detail"]
    assert "\n" not in problem["detail"]
    spec = client.get("/openapi.json").json()  # the answer is what the document declares
    declared = _declared(spec, "/meters/{meter_id}/readings/{ts}", "put", "422", "application/problem+json")
    jsonschema.validate(problem, declared)
    description = spec["paths"]["/meters/{meter_id}/readings/{ts}"]["put"]["responses"]["422"]["description"]
    assert description.endswith("or a value too long for one of the database's indexes (table, index, columns)")
    with psycopg.connect(url) as conn:  # the transaction rolled back: the reading as it was, no history
        assert conn.execute(
            "SELECT volume_m3, quality FROM readings WHERE meter_id = %s", (UNINDEXABLE_ID,)
        ).fetchone() == (Decimal("100.000"), "actual")
        assert conn.execute("SELECT count(*) FROM reading_history").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM late_readings").fetchone() == (0,)
    corrected = client.put(f"/meters/M1/readings/{T0.isoformat()}", json=body)  # others' edits go on
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["quality"] == "edited"
