"""Service point ids are identifiers: registration refuses others by row, and NEM12 refuses any id
it cannot write.

Before, `aquami server register-meters` recorded the service point "12 High St, Flat 2", and its
NEM12 200 record had 11 fields instead of 10: the NMI ended at "12 High St".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aquami.contracts.reads import is_identifier
from server.app import create_app
from server.auth import create_api_key
from tests.server.test_meters_api import _installations, _register

HEADER = "meter_id,dma,role,service_point_id,installed_at\n"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(point=st.text(st.characters(codec="utf-8", exclude_characters='"\r\n\x00'), min_size=1, max_size=70))
def test_a_service_point_id_that_is_no_identifier_is_refused_by_its_row(migrated_database_url, tmp_path, point):
    point = point.strip()
    if not point or "," in point:
        point = f"12 High St{point}, Flat 2"  # a comma, quoted in the file: a field in NEM12
    result = _register(
        migrated_database_url,
        tmp_path / "meters.csv",
        HEADER + f'OK1,D1,customer,SP1,2025-01-01T00:00:00Z\nM1,D1,customer,"{point}",2025-01-01T00:00:00Z\n',
    )
    if is_identifier(point):
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2 and "row 3: service_point_id" in result.output, result.output
    assert point not in {row[1] for row in _installations(migrated_database_url)}


def test_nem12_refuses_a_service_point_id_it_cannot_write(migrated_database_url):
    day = datetime(2026, 2, 1, tzinfo=UTC)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M1', true)")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('12 High St, Flat 2')")
        conn.execute("INSERT INTO meter_installations (service_point_id, meter_id, installed_at) "
                     "VALUES ('12 High St, Flat 2', 'M1', %s)", (day - timedelta(days=1),))  # fmt: skip
    with TestClient(create_app(migrated_database_url), raise_server_exceptions=False) as client:
        response = client.get("/billing/nem12?period=2026-02-01/2026-02-02", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 409, response.text
    assert "'12 High St, Flat 2' cannot be written in NEM12" in response.json()["detail"]


def test_a_far_too_long_id_is_quoted_by_its_start_and_length(migrated_database_url, tmp_path):
    """A meter id or service point id of 100,000 characters is refused by its row, quoted by its
    first 32 characters and its length (aquami.excerpt), as a district is; before, the one error line
    held the whole id."""
    long_id = "M" * 100_000
    for row in (f"{long_id},D1,customer,,", f"M1,D1,customer,{long_id},2025-01-01T00:00:00Z"):
        result = _register(migrated_database_url, tmp_path / "meters.csv", HEADER + row + "\n")
        assert result.exit_code == 2, result.output
        assert "row 2: " in result.output and "… (100000 characters)" in result.output, result.output[:2000]
        assert len(result.output) < 2_000, len(result.output)
