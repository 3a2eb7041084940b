"""A district stored before register-meters bounded its name (DMA_MAX_LENGTH), too long for the
alerts' and enquiries' indexes, costs detection that district's alerts, not every district's.

PostgreSQL refuses a btree index row over 2,704 bytes. A name of 2,672 bytes that do not compress
is stored in ``meters`` (meters_dma_idx takes it), but an alert in that district is not
(enquiries_dma_idx, alerts_status_newest_idx). Before, the run's one save failed with
``ProgramLimitExceeded``: no alert of the run was stored in any district, nor the run recorded, and
so again at every run, each failure one warning in the log (the schedule tries again every 15
minutes, for good)."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

import psycopg
import pytest

from aquami.excerpt import quoted
from collector.detection.alerts import AlertKind
from collector.detection_job import DetectionJobConfig, run_detection_once
from simulators.events import Leak
from simulators.meter_model import MeterModel
from tests.collector.test_detection_job import START, store_hours

LEAK_START = START + timedelta(days=6, hours=3)


def _district(length: int, seed: int = 11) -> str:
    """``length`` random characters of 4 bytes each in UTF-8: nothing for compression to shrink."""
    rnd = random.Random(seed)
    return "".join(chr(rnd.randrange(0x10000, 0x110000)) for _ in range(length))


#: 2,672 bytes: meters_dma_idx takes it, the alerts' and enquiries' indexes do not.
LONG = _district(668)


def collector_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The collector's warnings. psycopg may add its own, when PostgreSQL refuses a row of a batch
    it sends in a pipeline ("error ignored terminating <psycopg.Pipeline …>: pipeline aborted"), or
    not, as the batch's rows were in flight: counted with the collector's, they failed this test
    now and then ("too many values to unpack")."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("collector")]


def _fleet() -> list[MeterModel]:
    """Ten meters in D1 and ten in LONG, each district with a leak (DJ-007 and DJ-017)."""
    meters = [
        MeterModel(f"DJ-{i:03d}", installed=START - timedelta(days=1), seed=11, dma="D1" if i < 10 else LONG)
        for i in range(20)
    ]
    meters[7].inject(Leak(start=LEAK_START, rate_lph=25.0))
    meters[17].inject(Leak(start=LEAK_START, rate_lph=25.0))
    return meters


def test_a_district_too_long_for_the_indexes_loses_its_own_alerts_only_and_is_said_once(
    migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = migrated_database_url
    meters = _fleet()
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:  # as register-meters stored it once
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, %s, 'customer')",
            [(m.meter_id, "D1" if int(m.meter_id[3:]) < 10 else LONG) for m in meters],
        )
    store_hours(url, meters, 0, 9 * 24)
    config = DetectionJobConfig(history_days=9)
    first_run = START + timedelta(days=9)

    with caplog.at_level(logging.WARNING, logger="collector"), psycopg.connect(url) as conn:
        changes = run_detection_once(conn, first_run, config)
    leaks = sorted(a.meter_id or "" for a in changes.opened if a.kind is AlertKind.LEAK)
    assert leaks == ["DJ-007"]  # the run's changes are those saved
    assert all(a.dma == "D1" for a in changes.changed)
    [said] = collector_warnings(caplog)
    assert said.startswith(f"detection: district {quoted(LONG)}, 2672 bytes, is too long"), said
    assert "(668 characters)" in said and "register-meters" in said and "\n" not in said
    assert len(said) < len(quoted(LONG)) + 300  # the name by its start, not whole
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT meter_id, dma FROM alerts WHERE kind = 'leak'").fetchall()
        assert stored == [("DJ-007", "D1")]
        assert conn.execute("SELECT count(*) FROM enquiries WHERE dma = 'D1'").fetchone() == (len(changes.opened),)
        runs = conn.execute("SELECT run_at, opened FROM detection_runs").fetchall()
        assert runs == [(first_run, len(changes.opened))]

    caplog.clear()
    store_hours(url, meters, 9 * 24, 9 * 24 + 2)  # the leaks go on: the next run finds both again
    with caplog.at_level(logging.WARNING, logger="collector"), psycopg.connect(url) as conn:
        later = run_detection_once(conn, first_run + timedelta(hours=1), config)
    assert collector_warnings(caplog) == []  # said once
    assert [a.meter_id for a in later.updated if a.kind is AlertKind.LEAK] == ["DJ-007"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM detection_runs").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM alerts WHERE dma <> 'D1'").fetchone() == (0,)
