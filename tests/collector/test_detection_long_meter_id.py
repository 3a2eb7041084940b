"""A meter stored before register-meters bounded its id (64 characters), too long for the alerts'
indexes, costs detection that meter's alerts, not every meter's, and the log names the meter.

An alert's id holds its meter's id (``leak/<meter id>/<time>``). A meter id of 2,680 bytes that do
not compress is stored in ``meters`` and ``readings`` (meters_pkey and readings_pkey take it), but
an alert of that meter is not (alerts_pkey). Detection saves every other alert of the run
(:func:`collector.alert_store.save_what_fits`), as for a district too long; before, the warning
blamed the meter's district ("district 'D1', 2 bytes, is too long"), which is not, and said nothing
of the next meter refused in that district."""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg
import pytest

from aquami.excerpt import quoted
from collector.detection.alerts import AlertKind
from collector.detection_job import DetectionJobConfig, run_detection_once
from simulators.events import Leak
from simulators.meter_model import MeterModel
from tests.collector.test_detection_job import START, store_hours
from tests.collector.test_detection_long_district import LEAK_START, _district, collector_warnings

#: 2,680 bytes: meters_pkey and readings_pkey take it, alerts_pkey does not (the alert's id is longer).
LONG_ID = _district(670, seed=12)


def test_a_meter_id_too_long_for_the_alerts_indexes_loses_its_own_alerts_only_and_is_named_once(
    migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = migrated_database_url
    meters = [MeterModel(f"DJ-{i:03d}", installed=START - timedelta(days=1), seed=11, dma="D1") for i in range(10)]
    meters.append(MeterModel(LONG_ID, installed=START - timedelta(days=1), seed=11, dma="D1"))
    meters[7].inject(Leak(start=LEAK_START, rate_lph=25.0))
    meters[10].inject(Leak(start=LEAK_START, rate_lph=25.0))
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:  # as register-meters stored it once
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
            [(m.meter_id,) for m in meters],
        )
    store_hours(url, meters, 0, 9 * 24)
    config = DetectionJobConfig(history_days=9)
    first_run = START + timedelta(days=9)

    with caplog.at_level(logging.WARNING, logger="collector"), psycopg.connect(url) as conn:
        changes = run_detection_once(conn, first_run, config)
    assert sorted(a.meter_id or "" for a in changes.opened if a.kind is AlertKind.LEAK) == ["DJ-007"]
    assert LONG_ID not in {a.meter_id for a in changes.changed}  # the run's changes are those saved
    [said] = collector_warnings(caplog)
    assert said.startswith(f"detection: meter {quoted(LONG_ID)}, 2680 bytes, has an id too long"), said
    assert "(670 characters)" in said and "register-meters" in said and "\n" not in said
    assert "district" not in said.split("register-meters")[0]  # D1 is not blamed
    assert len(said) < len(quoted(LONG_ID)) + 300  # the id by its start, not whole
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT meter_id FROM alerts WHERE kind = 'leak'").fetchall()
        assert stored == [("DJ-007",)]
        assert conn.execute("SELECT count(*) FROM alerts WHERE meter_id = %s", (LONG_ID,)).fetchone() == (0,)
        runs = conn.execute("SELECT run_at, opened FROM detection_runs").fetchall()
        assert runs == [(first_run, len(changes.opened))]

    caplog.clear()
    store_hours(url, meters, 9 * 24, 9 * 24 + 2)  # the leaks go on: the next run finds both again
    with caplog.at_level(logging.WARNING, logger="collector"), psycopg.connect(url) as conn:
        later = run_detection_once(conn, first_run + timedelta(hours=1), config)
    assert collector_warnings(caplog) == []  # said once
    assert [a.meter_id for a in later.updated if a.kind is AlertKind.LEAK] == ["DJ-007"]
