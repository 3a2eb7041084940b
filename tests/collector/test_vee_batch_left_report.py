"""A VEE batch left undone after conflicting at each of its runs is in the run's report, not only in
the log: ``batches_left`` and ``meters_left`` in what ``aquami collector vee`` prints (which then
exits 1 saying to run it again) and in what a round returns (its log line ``vee {…}`` and the
scheduler's ``last_report``), and a round keeps the late-read notes it covered for the next one.
On the real database: the conflicts are real serialization failures, raised by the database (a
trigger on one meter's flags) each time the batch deletes its old flags.

Before, the batch was said in a WARNING line only: the report counted the other meters' work, the
command exited 0 over a period left partly unvalidated, and a round deleted its late-read notes, so
the next round no longer reached back for the left meters' late reads."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from aquami.cli import app
from collector.vee.config import VeeConfig
from collector.vee.rounds import vee_round

NOW = datetime(2026, 11, 3, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
METERS = ("VL-A", "VL-B", "VL-C")
CONFLICTING = "VL-B"


def _seed(url: str) -> None:
    """Three hourly meters over the last day; VL-B has a flag in the period that a trigger refuses
    to delete with a serialization failure (SQLSTATE 40001), as a conflict with another
    transaction would."""
    with psycopg.connect(url) as conn:
        for meter in METERS:
            conn.execute("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", (meter,))
            for k in range(24):
                ts = NOW - (24 - k) * HOUR
                conn.execute(
                    "INSERT INTO readings (meter_id, ts, volume_m3, received_at) VALUES (%s, %s, %s, %s)",
                    (meter, ts, 100 + k * 0.01, ts),
                )
        conn.execute(
            "INSERT INTO vee_flags (meter_id, ts, rule, detail) VALUES (%s, %s, 'stuck_register', 'an old flag')",
            (CONFLICTING, NOW - 3 * HOUR),
        )
        conn.execute(
            "CREATE FUNCTION conflict_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'could not serialize access due to concurrent update' "
            "USING ERRCODE = 'serialization_failure'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER conflict_on_delete BEFORE DELETE ON vee_flags FOR EACH ROW "
            f"WHEN (OLD.meter_id = '{CONFLICTING}') EXECUTE FUNCTION conflict_on_delete()"
        )


def test_the_command_reports_the_batch_left_and_exits_1(
    migrated_database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Batches of one meter: VL-B's conflicts at its 3 runs and is left; VL-A's and VL-C's are done.
    Its warning says what the command's error says: run it again (before, "left for the next
    round", which a back-run has none of)."""
    caplog.set_level(logging.WARNING, logger="collector.vee.runner")
    url = migrated_database_url
    _seed(url)
    config = tmp_path / "vee.json"
    config.write_text(json.dumps({"batch_meters": 1}))
    start, end = NOW - 2 * 24 * HOUR, NOW + HOUR
    result = CliRunner().invoke(
        app,
        ["collector", "vee", "--from", start.isoformat(), "--to", end.isoformat(), "--config", str(config)],
        env={"AQUAMI_DATABASE_URL": url},
    )
    report = json.loads(result.stdout)
    assert (report["batches_left"], report["meters_left"], report["readings"]) == (1, 1, 48)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: VEE left 1 of its batches undone (1 meters), each rolled back")
    assert result.stderr.rstrip().endswith("run the same command again")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "VL-B" in warned[0], warned
    assert warned[0].endswith("; left undone: this run exits 1, run the same command again"), warned


def test_a_round_reports_the_batch_left_and_keeps_its_late_notes(
    migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A round over the same meters, with a late-read note: its report says the batch left, and the
    note stays for the next round, beside one of the round's own start (its first hours are the
    next round's too: tests/collector/test_vee_left_hours.py)."""
    caplog.set_level(logging.WARNING, logger="collector.vee.runner")
    url = migrated_database_url
    _seed(url)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO late_readings (since) VALUES (%s)", (NOW - 20 * HOUR,))
    report = vee_round(url, NOW, VeeConfig(batch_meters=1))
    assert report is not None
    assert (report["batches_left"], report["meters_left"]) == (1, 1)
    with psycopg.connect(url) as conn:
        notes = conn.execute("SELECT since FROM late_readings ORDER BY since").fetchall()
    assert notes == [(NOW + HOUR - 2 * 24 * HOUR,), (NOW - 20 * HOUR,)]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "VL-B" in warned[0] and warned[0].endswith("; left for the next round")
