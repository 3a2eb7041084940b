"""A district's (DMA's) name is at most ``DMA_MAX_LENGTH`` characters where aquami writes one.

``meters.dma`` is a key of btree indexes (and, in a district alert's id, of the alerts' primary key),
and PostgreSQL refuses an index row over 2,704 bytes: register-meters given a longer name stopped
with a psycopg traceback (exit 1, ``ProgramLimitExceeded``). It now refuses the file in one line
naming the row, the field and the limit (exit 2), storing none of it; the longest name it takes, in
4-byte characters that do not compress, goes through every index a district reaches."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aquami.cli import app
from aquami.districts import DMA_MAX_LENGTH
from collector.alert_store import save_changes
from collector.detection.alerts import AlertKind
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges
from collector.migrate import migrate
from server.app import create_app
from server.auth import create_api_key
from server.meters.districts import check_dmas
from server.meters.repository import register_meters

T0 = datetime(2026, 11, 2, 3, tzinfo=UTC)
HEADER = "meter_id,dma,role,service_point_id,installed_at\n"


def _district(length: int, seed: int = 7) -> str:
    """A name of ``length`` random characters of 4 bytes each in UTF-8: the most bytes a name of that
    length can be, and nothing for PostgreSQL's compression to shrink below its index limit."""
    rnd = random.Random(seed)
    return "".join(chr(rnd.randrange(0x10000, 0x110000)) for _ in range(length))


def _register(path: Path, url: str) -> tuple[int, str]:
    """The exit code and the output, an error's box undone (it wraps at the terminal's width)."""
    result = CliRunner().invoke(app, ["server", "register-meters", str(path), "--database-url", url])
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize("length", [DMA_MAX_LENGTH + 1, 1000])
def test_register_meters_refuses_a_longer_district_in_one_line_and_stores_nothing(
    tmp_path: Path, migrated_database_url: str, length: int
) -> None:
    """1,000 characters (4,000 bytes) is past the index's limit: before, a traceback; one character
    over the limit was stored. Either is refused, naming the row, and the file's other row (a
    meter recorded before, moved to another district) is not recorded either."""
    url = migrated_database_url
    before = tmp_path / "before.csv"
    before.write_text("meter_id,dma,role\nM1,Hillside,customer\n")
    assert _register(before, url)[0] == 0
    meters = tmp_path / "meters.csv"
    meters.write_text(
        HEADER + "M1,Lowfield,customer,SP-1,2026-01-01T00:00:00Z\n"
        f"M2,{_district(length)},customer,SP-2,2026-01-01T00:00:00Z\n",
        encoding="utf-8",
    )
    code, output = _register(meters, url)
    assert code == 2, output
    assert "row 3: dma '" in output and f"({length} characters)" in output, output
    assert f"at most {DMA_MAX_LENGTH} characters" in output, output
    assert "Traceback" not in output and "psycopg" not in output, output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT meter_id, dma FROM meters ORDER BY 1").fetchall() == [("M1", "Hillside")]
        assert conn.execute("SELECT count(*) FROM service_points").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM meter_installations").fetchone() == (0,)


def test_the_repository_refuses_a_longer_district_before_writing(migrated_database_url: str) -> None:
    """The demo and the benchmarks call register_meters directly: it refuses too, naming the meter."""
    with psycopg.connect(migrated_database_url) as conn:
        with pytest.raises(ValueError, match=f"meter 'M9': dma .* at most {DMA_MAX_LENGTH} characters"):
            register_meters(conn, [("M8", "Hillside", "customer"), ("M9", _district(1000), "customer")])
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM meters").fetchone() == (0,)
    check_dmas([("M1", _district(DMA_MAX_LENGTH)), ("M2", None)])  # at the limit, or none: taken


def test_the_longest_district_register_meters_takes_goes_through_every_index_it_reaches(
    tmp_path: Path, migrated_database_url: str
) -> None:
    """At the limit in 4-byte characters (2,000 bytes that do not compress) a district is stored in
    meters and service points, summed in dma_consumption_hourly, carried by a meter's burst and by a
    district burst (whose id holds the name: the alerts' primary key and its other indexes), filed
    with their enquiries, and found by both filters."""
    url = migrated_database_url
    dma = _district(DMA_MAX_LENGTH)
    assert len(dma.encode()) == 4 * DMA_MAX_LENGTH
    meters = tmp_path / "meters.csv"
    meters.write_text(HEADER + f"C1,{dma},customer,SP-1,2026-01-01T00:00:00Z\nI1,{dma},inlet,,\n", encoding="utf-8")
    code, output = _register(meters, url)
    assert code == 0, output
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT dma FROM service_points").fetchall() == [(dma,)]
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3) SELECT m, %s + h * interval '1 hour', h "
            "FROM unnest(ARRAY['C1', 'I1']) m, generate_series(0, 3) h",
            (T0,),
        )
        conn.execute("SELECT refresh_consumption(%s, %s)", (T0, T0 + timedelta(hours=3)))
        assert conn.execute("SELECT count(*) FROM dma_consumption_hourly WHERE dma = %s", (dma,)).fetchone() == (3,)
        at = T0 + timedelta(hours=3)
        alerts = [
            new_alert(
                kind, meter, dma, start=at - timedelta(hours=1), detected_at=at, last_seen=at, ended_at=None,
                rate_l_h=200.0, volume_l=200.0, confidence=0.9, evidence=((at - timedelta(hours=1), at),),
            ).replace(updated_at=at)
            for kind, meter in ((AlertKind.BURST, "C1"), (AlertKind.DMA_BURST, None))
        ]  # fmt: skip
        save_changes(conn, AlertChanges(opened=alerts))
        key = create_api_key(conn, "Test reader", ["reader"])
    expected = sorted(a.alert_id for a in alerts)
    assert any(dma in alert_id for alert_id in expected)
    with TestClient(create_app(url), headers={"Authorization": f"Bearer {key}"}) as client:
        found = client.get("/alerts", params={"dma": dma})
        assert found.status_code == 200, found.text
        assert sorted(a["alert_id"] for a in found.json()["items"]) == expected
        enquiries = client.get("/enquiries", params={"dma": dma})
        assert enquiries.status_code == 200, enquiries.text
        assert sorted(e["alert_id"] for e in enquiries.json()["items"]) == expected


def test_register_meters_help_states_the_limit() -> None:
    result = CliRunner().invoke(app, ["server", "register-meters", "--help"], env={"COLUMNS": "400"})
    assert f"a name of at most {DMA_MAX_LENGTH} characters" in " ".join(result.output.replace("│", " ").split())


LONG_DISTRICTS_MIGRATION = "server/0060_districts_over_register_meters_limit.sql"


def test_migrate_warns_once_in_one_line_about_meters_in_districts_over_the_limit(
    migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A database from before register-meters bounded a district may hold longer ones (a name of
    2,650 bytes or more stops detection storing its alerts): migrating it says how many meters and
    districts, and what to do, once; a database without one migrates silently. Nothing is changed."""
    url = migrated_database_url
    names = [_district(DMA_MAX_LENGTH + 1), "x" * 2000, "Hillside"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE name = %s", (LONG_DISTRICTS_MIGRATION,))
        with caplog.at_level(logging.WARNING, logger="collector.migrate"):
            assert migrate(url) == [LONG_DISTRICTS_MIGRATION]
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []  # none over the limit
        conn.execute("DELETE FROM schema_migrations WHERE name = %s", (LONG_DISTRICTS_MIGRATION,))
        at_the_limit = _district(DMA_MAX_LENGTH)
        rows = [("M1", names[0]), ("M2", names[0]), ("M3", names[1]), ("M4", names[2]), ("M5", at_the_limit)]
        conn.cursor().executemany("INSERT INTO meters (meter_id, registered, dma) VALUES (%s, true, %s)", rows)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="collector.migrate"):
        assert migrate(url) == [LONG_DISTRICTS_MIGRATION]
        assert migrate(url) == []
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith(f"3 meter(s) in 2 district(s) have a district name over {DMA_MAX_LENGTH} characters")
    assert f"SELECT meter_id, length(dma) FROM meters WHERE length(dma) > {DMA_MAX_LENGTH}" in warning
    assert "register them again with a shorter district (aquami server register-meters" in warning
    assert "\n" not in warning
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT meter_id, dma FROM meters ORDER BY 1").fetchall() == sorted(rows)


@pytest.mark.parametrize("line_break", ["\n", "\r\n", "\u2028", "\x85"])
def test_register_meters_refuses_a_district_with_a_line_break_naming_the_row(
    tmp_path: Path, migrated_database_url: str, line_break: str
) -> None:
    """A quoted field over two lines (or one holding a Unicode line separator) is a broken file, not a
    district, as it is no account's name (register-accounts): before, it was stored, and the
    district, its alerts' and a district alert's id ran over two lines. Refused now, like a name too
    long, naming the row, and nothing of the file is stored."""
    url = migrated_database_url
    meters = tmp_path / "meters.csv"
    meters.write_text(
        HEADER + "M1,Lowfield,customer,SP-1,2026-01-01T00:00:00Z\n"
        f'M2,"Hill{line_break}side",customer,SP-2,2026-01-01T00:00:00Z\n',
        encoding="utf-8",
        newline="",
    )
    code, output = _register(meters, url)
    assert code == 2, output
    assert f"row 3: dma {'Hill' + line_break + 'side'!r} has a line break: a district's name is one line" in output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM meters").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM service_points").fetchone() == (0,)
        with pytest.raises(ValueError, match=r"meter 'M2': dma 'Hill.*side' has a line break"):
            register_meters(conn, [("M1", "Lowfield", "customer"), ("M2", f"Hill{line_break}side", "customer")])
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM meters").fetchone() == (0,)
