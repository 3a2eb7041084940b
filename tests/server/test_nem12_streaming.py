"""NEM12 is streamed: a server-side cursor, a few thousand rows a round trip, the file written as it comes.

Before, the export fetched every meter-hour of the period as a dict and built the whole file as one
string, answered as one response: 10,000 meters' month took 990 MB, 100,000 were killed past 9 GB.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from typer.testing import CliRunner

from aquami.cli import app
from server.app import create_app
from server.auth import create_api_key
from server.billing import nem12

DAY = datetime(2026, 11, 2, tzinfo=UTC)
METERS = 7
NOW = datetime(2026, 11, 10, tzinfo=UTC)


def _fleet(url: str) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for i in range(METERS):
            meter, point = f"M{i}", f"SP{i}"
            cur.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", (meter,))
            cur.execute("INSERT INTO service_points (service_point_id) VALUES (%s)", (point,))
            cur.execute(
                "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES (%s, %s, %s)",
                (point, meter, DAY - timedelta(days=10)),
            )
        with cur.copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for i in range(METERS):
                for h in range(49):
                    if i == 3 and 10 <= h < 14:  # a gap: 400 records and an accumulated hour
                        continue
                    copy.write_row((f"M{i}", DAY + timedelta(hours=h), Decimal("100") + Decimal("0.01") * h * (i + 1)))
        cur.execute("SELECT refresh_consumption(%s, %s)", (DAY, DAY + timedelta(days=2)))


def test_the_export_fetches_a_bounded_number_of_rows_per_round_trip_through_a_named_cursor(
    migrated_database_url, monkeypatch
):
    _fleet(migrated_database_url)
    with psycopg.connect(migrated_database_url, row_factory=dict_row) as conn:
        whole = nem12.nem12_file(conn, DAY, DAY + timedelta(days=2), now=NOW)  # type: ignore[arg-type]
    fetches: list[tuple[str | None, int, int]] = []
    fetchmany = psycopg.ServerCursor.fetchmany

    def spy(cur: psycopg.ServerCursor[Any], size: int = 0) -> list[Any]:
        rows = fetchmany(cur, size)
        fetches.append((cur.name, size, len(rows)))
        return rows

    monkeypatch.setattr(psycopg.ServerCursor, "fetchmany", spy)
    monkeypatch.setattr(nem12, "FETCH_ROWS", 5)
    with psycopg.connect(migrated_database_url) as plain:
        export = nem12.prepare(plain, DAY, DAY + timedelta(days=2), now=NOW)
        chunks = nem12.nem12_chunks(plain, export)
        header, first_stream = next(chunks), next(chunks)
        assert header.startswith("100,NEM12,") and first_stream.startswith("200,SP0,")
        # mid-file: the rows wait in the server's cursor, not in this process
        open_cursors = plain.execute("SELECT name FROM pg_cursors").fetchall()
        streamed = header + first_stream + "".join(chunks)
    assert ("nem12_export",) in open_cursors
    assert streamed == whole  # byte for byte, five rows a round trip or all at once
    rows = sum(n for _, _, n in fetches)
    assert rows == METERS * 48 - 4  # every hour of the two days with consumption (M3: 4 in its gap), five a trip
    assert {(name, size) for name, size, _ in fetches} == {("nem12_export", 5)}
    assert len(fetches) == -(-rows // 5) + 1  # and the last, empty, that ends it


def test_the_api_streams_the_same_bytes_and_the_cli_writes_them(migrated_database_url, tmp_path):
    _fleet(migrated_database_url)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
    with psycopg.connect(migrated_database_url, row_factory=dict_row) as conn:
        whole = nem12.nem12_file(conn, DAY, DAY + timedelta(days=2))  # type: ignore[arg-type]
    with TestClient(create_app(migrated_database_url)) as client:
        response = client.get("/billing/nem12?period=2026-11-02/2026-11-04", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert "content-length" not in response.headers  # streamed: its length is not known before it is sent
    assert _unstamped(response.text) == _unstamped(whole)
    out = tmp_path / "nem12.csv"
    env = {"AQUAMI_DATABASE_URL": migrated_database_url}
    result = CliRunner().invoke(app, ["bill", "nem12", "--period", "2026-11-02/2026-11-04", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert _unstamped(out.read_bytes().decode()) == _unstamped(whole)


def _unstamped(text: str) -> str:
    """Without the file's creation time (100 and 300 records): two exports a minute apart differ there."""
    return re.sub(r"\b\d{12,14}\b", "STAMP", text)
