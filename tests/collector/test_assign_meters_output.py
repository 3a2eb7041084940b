"""What ``aquami collector assign-meters`` says: a meter id nobody registered nor heard is named on
stderr (a typo went unnoticed and the meter meant stayed unassigned), and the moments of its JSON
are UTC written with ``Z``, as every other JSON of the project writes them (they were ``+00:00``)."""

from __future__ import annotations

import json
import re

import psycopg
from typer.testing import CliRunner, Result

from aquami.cli import app
from collector.store import ReadingStore
from tests.collector.test_meter_gateways import T0, _write

UTC_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def _invoke(url: str, *args: str) -> Result:
    result = CliRunner().invoke(app, ["collector", "assign-meters", *args, "--database-url", url])
    assert result.exit_code == 0, result.output
    return result


def test_a_meter_neither_registered_nor_heard_is_named_and_still_assigned(migrated_database_url):
    url = migrated_database_url
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('WM-REG', true)")
    store = ReadingStore(url)
    try:
        _write(store, "gw-a", 1, [("WM-HEARD", T0, 1.5)])
    finally:
        store.close()
    result = _invoke(url, "WM-REG", "WM-HEARD", "M-NOPE", "--gateway", "gw-b")
    assert result.stderr.splitlines() == [
        "warning: meter M-NOPE is not registered (register-meters) and no gateway has reported it: assigned "
        "all the same, as a meter assigned ahead of its fitting; if the id is a typo, the meter meant is "
        "still not assigned"
    ]
    assert json.loads(result.stdout)["meters"] == {"WM-REG": ["gw-b"], "WM-HEARD": ["gw-b"], "M-NOPE": ["gw-b"]}
    again = _invoke(url, "M-NOPE", "--gateway", "gw-c")  # still unknown: said again
    assert "meter M-NOPE is not registered" in again.stderr
    assert _invoke(url, "WM-REG", "WM-HEARD", "--gateway", "gw-c").stderr == ""
    assert _invoke(url, "M-NOPE").stderr == ""  # showing assigns nothing: nothing to warn of


def test_moved_from_moments_are_utc_written_with_z(migrated_database_url):
    url = migrated_database_url
    store = ReadingStore(url)
    try:
        _write(store, "gw-a", 1, [("WM-M", T0, 1.5)])
    finally:
        store.close()
    moved = json.loads(_invoke(url, "WM-M", "--gateway", "gw-b").stdout)["moved_from"]
    shown = json.loads(_invoke(url, "WM-M").stdout)["moved_from"]
    assert moved == shown and list(moved["WM-M"]) == ["gw-a"]
    assert UTC_Z.fullmatch(moved["WM-M"]["gw-a"]), moved
