"""A service point is in the district of the meter in place there, as register-meters last said.

register-meters adds a service point it does not know in the district of the meter fitted there. A
meter registered again takes the file's district, but its service point kept the one it was first
added with: a premises moved to another DMA (a boundary redrawn, a district renamed) stayed in the
old one for every report by district over ``service_points``, and a district over 500 characters
stored before register-meters refused them (server migration 0060 says to register the meters again
with a shorter one) stayed on the service point. The point now follows its meter in place; a
removal recorded, or a meter given no district, leaves it as it was.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import psycopg
import pytest

from aquami.districts import DMA_MAX_LENGTH
from collector.migrate import migrate
from tests.server.test_meters_api import _register

FITTED = "2026-01-01T00:00:00Z"
HEADER = "meter_id,dma,role,service_point_id,installed_at,removed_at\n"


def _points(url: str) -> dict[str, str | None]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT service_point_id, dma FROM service_points").fetchall())


def _recorded(url: str, path: Path, content: str) -> None:
    result = _register(url, path, content)
    assert result.exit_code == 0, result.output


def test_a_meter_registered_again_in_another_district_moves_its_service_point(
    migrated_database_url: str, tmp_path: Path
) -> None:
    """With the installation given again, or without the installation columns at all. Before, SP-1
    stayed in Hillside: "assert 'Hillside' == 'Lowfield'"."""
    url, path = migrated_database_url, tmp_path / "meters.csv"
    _recorded(url, path, HEADER + f"M1,Hillside,customer,SP-1,{FITTED},\nM2,Hillside,customer,SP-2,{FITTED},\n")
    assert _points(url) == {"SP-1": "Hillside", "SP-2": "Hillside"}
    _recorded(url, path, HEADER + f"M1,Lowfield,customer,SP-1,{FITTED},\n")
    assert _points(url) == {"SP-1": "Lowfield", "SP-2": "Hillside"}
    _recorded(url, path, "meter_id,dma,role\nM2,Upton,customer\n")
    assert _points(url) == {"SP-1": "Lowfield", "SP-2": "Upton"}


def test_a_district_too_long_stored_before_leaves_the_service_point_once_its_meter_is_registered_again(
    migrated_database_url: str, tmp_path: Path
) -> None:
    """What server migration 0060's warning asks: register the meter again with a shorter district."""
    url = migrated_database_url
    rnd = random.Random(5)
    long = "".join(chr(rnd.randrange(0x10000, 0x110000)) for _ in range(DMA_MAX_LENGTH + 100))
    with psycopg.connect(url, autocommit=True) as conn:  # as register-meters stored them before it checked
        conn.execute(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES ('M1', true, %s, 'customer')", (long,)
        )
        conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP-1', %s)", (long,))
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP-1', 'M1', %s)",
            (FITTED,),
        )
    _recorded(url, tmp_path / "meters.csv", "meter_id,dma,role\nM1,Hillside,customer\n")
    assert _points(url) == {"SP-1": "Hillside"}
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM service_points WHERE length(dma) > %s", (DMA_MAX_LENGTH,)
        ).fetchone() == (0,)


def test_a_removal_or_no_district_leaves_the_service_point_where_it_is(
    migrated_database_url: str, tmp_path: Path
) -> None:
    """A meter taken out, and registered in another district, no longer says where its old service
    point is; at an exchange, the point follows the meter fitted in its place. A meter given no
    district says nothing about its point's."""
    url, path = migrated_database_url, tmp_path / "meters.csv"
    _recorded(url, path, HEADER + f"OLD-7,Hillside,customer,SP-7,{FITTED},\nM3,Hillside,customer,SP-3,{FITTED},\n")
    exchange = "2026-06-01T00:00:00Z"
    _recorded(url, path, HEADER + f"OLD-7,Stores,customer,SP-7,{FITTED},{exchange}\n")
    assert _points(url) == {"SP-7": "Hillside", "SP-3": "Hillside"}
    _recorded(url, path, HEADER + f"NEW-7,Lowfield,customer,SP-7,{exchange},\nM3,,customer,SP-3,{FITTED},\n")
    assert _points(url) == {"SP-7": "Lowfield", "SP-3": "Hillside"}


LONG_POINT_DISTRICTS_MIGRATION = "server/0061_service_point_districts_over_register_meters_limit.sql"


def test_migrate_warns_once_in_one_line_about_service_points_in_districts_over_the_limit(
    migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A point can hold a district over the limit that no meter holds (server migration 0060 counts
    meters only, and said nothing of these: its meter registered again before points followed their
    meter, or none in place there). Migrating says how many points and districts, and what to do,
    once; a database without one migrates silently. Nothing is changed."""
    url = migrated_database_url
    rnd = random.Random(6)
    long = "".join(chr(rnd.randrange(0x10000, 0x110000)) for _ in range(DMA_MAX_LENGTH + 1))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE name = %s", (LONG_POINT_DISTRICTS_MIGRATION,))
        with caplog.at_level(logging.WARNING, logger="collector.migrate"):
            assert migrate(url) == [LONG_POINT_DISTRICTS_MIGRATION]
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []  # none over the limit
        conn.execute("DELETE FROM schema_migrations WHERE name = %s", (LONG_POINT_DISTRICTS_MIGRATION,))
        points = [("SP-1", long), ("SP-2", long), ("SP-3", "x" * 2000), ("SP-4", "Hillside"), ("SP-5", "y" * 500)]
        conn.cursor().executemany("INSERT INTO service_points (service_point_id, dma) VALUES (%s, %s)", points)
        conn.execute("INSERT INTO meters (meter_id, registered, dma) VALUES ('M1', true, 'Hillside')")  # no meter's

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="collector.migrate"):
        assert migrate(url) == [LONG_POINT_DISTRICTS_MIGRATION]
        assert migrate(url) == []
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith(
        f"3 service point(s) in 2 district(s) have a district name over {DMA_MAX_LENGTH} characters"
    ), warning
    assert f"SELECT service_point_id, length(dma) FROM service_points WHERE length(dma) > {DMA_MAX_LENGTH}" in warning
    assert "register the meter in place at each again with a shorter district (aquami server register-meters" in warning
    assert "\n" not in warning
    assert _points(url) == dict(points)
