"""The spool keeps each remembered identity's kind (an M-Bus identification, a Modbus serial number:
gateway.meter_identity): an earlier version's spool gains the column as it opens, its rows kept
(kind unknown), and a damaged spool's salvage copies it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.spool import Spool
from tests.gateway.spool_damage import overwrite_pages, readings, table_pages, write_spool

FIRST_AT = "2026-06-04T03:30:00.000Z"


def test_an_earlier_versions_identities_are_read_on_without_a_kind_and_take_one(tmp_path: Path) -> None:
    """A spool of before (user_version 2, ``mbus_identities`` without ``kind``) opens with its rows,
    their kind None; a row saved since keeps its kind across a reopening."""
    path = tmp_path / "gw.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE mbus_identities (meter_id TEXT PRIMARY KEY, identification TEXT NOT NULL, "
            "first_at TEXT NOT NULL);"
            f"INSERT INTO mbus_identities VALUES ('FLAT-5', '11111111', '{FIRST_AT}');"
            "PRAGMA user_version = 2;"
        )
    old.close()
    spool = Spool(path)
    try:
        assert spool.load_identity("FLAT-5") == ("11111111", FIRST_AT, None)
        spool.save_identity("FLAT-6", "40000006", FIRST_AT, "serial number")
    finally:
        spool.close()
    reopened = Spool(path)
    try:
        assert reopened.load_identity("FLAT-6") == ("40000006", FIRST_AT, "serial number")
        assert reopened.load_identity("FLAT-5") == ("11111111", FIRST_AT, None)
    finally:
        reopened.close()


def test_a_damaged_spool_s_salvage_keeps_each_identity_s_kind(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite"
    write_spool(path, readings(1500))
    spool = Spool(path)
    spool.save_identity("FLAT-5", "11111111", FIRST_AT, "identification")
    spool.save_identity("FLAT-6", "40000006", FIRST_AT, "serial number")
    spool.close()
    leaves = sorted(p for p, where in table_pages(path, "readings").items() if where != "/")
    overwrite_pages(path, [leaves[3]], b"\xde\xad")
    salvaged = Spool(path)
    try:
        assert salvaged.damage is not None
        assert salvaged.load_identity("FLAT-5") == ("11111111", FIRST_AT, "identification")
        assert salvaged.load_identity("FLAT-6") == ("40000006", FIRST_AT, "serial number")
    finally:
        salvaged.close()
