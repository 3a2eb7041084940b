"""Collector migration 0070: the meter alarms that are no flow, stored before with the household's
use as their rate and volume, claim no water; flow alerts keep their figures."""

from __future__ import annotations

import psycopg
import pytest

from collector import alert_store
from collector import migrate as migrate_module
from collector.detection.alerts import AlertKind
from collector.detection.lifecycle import AlertChanges
from tests.server.test_alerts_api import alert

MIGRATION = "collector/0070_"


def test_migration_0070_zeroes_the_figures_of_alarms_that_are_no_flow(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = migrate_module.migration_files()
    monkeypatch.setattr(migrate_module, "migration_files", lambda: [f for f in every if not f[0].startswith(MIGRATION)])
    migrate_module.migrate(database_url)
    stored = [alert(kind, f"M-{kind.value}", 3) for kind in AlertKind if kind is not AlertKind.DMA_BURST]
    with psycopg.connect(database_url) as conn:
        alert_store.save_changes(conn, AlertChanges(opened=stored))
    monkeypatch.setattr(migrate_module, "migration_files", lambda: every)
    assert [name for name in migrate_module.migrate(database_url) if name.startswith(MIGRATION)]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT kind, rate_l_h, volume_l FROM alerts").fetchall()
    figures = {kind: (rate, volume) for kind, rate, volume in rows}
    no_flow = {"tamper", "dry", "low_battery", "meter_error"}
    assert {kind: figures[kind] for kind in no_flow} == dict.fromkeys(no_flow, (0.0, 0.0))
    assert {kind: figures[kind] for kind in figures.keys() - no_flow} == dict.fromkeys(
        ["leak", "burst", "reverse_flow", "stuck"], (12.5, 62.5)
    )
