"""A VEE round in batches of meters gives what one batch gives, and loads no more than a batch at a time.

Before, a round loaded the whole fleet's 28-day look-back into one process: about 400 bytes per
reading, 2.8 GB for 10,000 hourly meters (some 28 GB extrapolated for 100,000).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collector.vee.runner as runner
from collector.vee.config import VeeConfig
from collector.vee.runner import run_vee

END = datetime(2026, 3, 2, tzinfo=UTC)
NOW = END - timedelta(hours=1)
DAYS = 8

meter = st.fixed_dictionaries(
    {
        "daily": st.booleans(),
        "drops": st.sets(st.integers(1, 200), max_size=12),
        "step_back_at": st.one_of(st.none(), st.integers(1, 150)),
        "rate": st.sampled_from([0.0, 0.01, 0.05]),
    }
)


def _rows(name: str, spec: dict[str, Any]) -> list[tuple[str, datetime, str]]:
    step = timedelta(days=1) if spec["daily"] else timedelta(hours=1)
    count = DAYS if spec["daily"] else DAYS * 24
    drops = {d % count for d in spec["drops"]}
    step_back = None if spec["step_back_at"] is None else spec["step_back_at"] % count
    rows, volume = [], 500.0
    for i in range(count):
        volume = 3.0 if step_back == i else volume + spec["rate"] * step.total_seconds() / 3600
        if i not in drops:
            rows.append((name, NOW - (count - 1 - i) * step, f"{volume:.3f}"))
    return rows


def _snapshot(conn: psycopg.Connection) -> tuple[list[Any], ...]:
    queries = (
        "SELECT meter_id, ts, volume_m3, quality, quality_by, quality_reason FROM readings ORDER BY 1, 2",
        "SELECT meter_id, ts, rule, detail FROM vee_flags ORDER BY 1, 2, 3",
        "SELECT meter_id, ts, kind, consumption_m3, detail FROM register_discontinuities ORDER BY 1, 2",
        "SELECT meter_id, read_interval_s FROM meters ORDER BY 1",
    )
    return tuple(conn.execute(q).fetchall() for q in queries)


def _reset(conn: psycopg.Connection) -> None:
    conn.execute("DELETE FROM readings WHERE quality = 'estimated'")
    conn.execute("DELETE FROM vee_flags")
    conn.execute("DELETE FROM register_discontinuities")
    conn.execute("UPDATE meters SET read_interval_s = NULL")
    conn.commit()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fleet=st.lists(meter, min_size=1, max_size=7))
def test_batches_of_1_3_and_all_meters_give_the_same_results(migrated_database_url, monkeypatch, fleet):
    loaded: list[int] = []
    load = runner.load_series

    def counting_load(*args: Any, **kwargs: Any) -> Any:
        series = load(*args, **kwargs)
        loaded.append(len(series.meter_ids))
        return series

    monkeypatch.setattr(runner, "load_series", counting_load)
    names = [f"M{i:02d}" for i in range(len(fleet))]
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("DELETE FROM readings")
        conn.execute("DELETE FROM meters")
        conn.execute("DELETE FROM reading_history")
        conn.cursor().executemany("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", [(n,) for n in names])
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for name, spec in zip(names, fleet, strict=True):
                for row in _rows(name, spec):
                    copy.write_row(row)
        conn.commit()
        results = {}
        for size in (1, 3, len(names)):
            _reset(conn)
            loaded.clear()
            report = run_vee(conn, END - timedelta(days=2), END, VeeConfig(batch_meters=size), now=NOW)
            assert loaded and max(loaded) <= size  # no load holds more than a batch of meters
            results[size] = (asdict(report), _snapshot(conn))
    assert results[1] == results[3] == results[len(names)]


def test_the_batch_size_is_configuration():
    assert VeeConfig.from_mapping({"batch_meters": "500"}).batch_meters == 500
    with pytest.raises(ValueError, match="batch_meters"):
        VeeConfig.from_mapping({"batch_meters": -1})
