"""What ``aquami collector assign-meters`` says: the moments of its JSON are UTC written with ``Z``,
as every other JSON of the project writes them (they were ``+00:00``)."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner, Result

from aquami.cli import app
from collector.store import ReadingStore
from tests.collector.test_meter_gateways import T0, _write

UTC_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def _invoke(url: str, *args: str) -> Result:
    result = CliRunner().invoke(app, ["collector", "assign-meters", *args, "--database-url", url])
    assert result.exit_code == 0, result.output
    return result


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
